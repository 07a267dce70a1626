//! A service registered under a strong name, and clients that send to it by name.
//!
//! `serve` registers the strong name (ephemeral: it vanishes with this node's
//! session) for its process and answers every message with `NAME: ` and the message.
//! If another node holds the name, it stands by and retries, and takes the name over
//! once its holder is gone. `ask` sends one question to whoever holds the name and
//! prints the answer: the owner's node refuses a message carrying an outdated version
//! of the name, so a client never reaches an old owner by mistake.
//!
//! TLS comes from memory (`MESH_CA_PEM`, `MESH_CERT_PEM`, `MESH_KEY_PEM`); no admin
//! HTTP API. Strong names need the quorum plane (voters with data directories):
//!
//! ```text
//! strong_name serve --name a --bind 127.0.0.1:7001 --voters a,b,c --data-dir /tmp/a
//! strong_name serve --name b ... --seed 127.0.0.1:7001
//! strong_name ask   --name d --bind 127.0.0.1:7004 --voters a,b,c --seed 127.0.0.1:7001
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mesh_agent::runtime::{Agent, ApiError, Tls};
use mesh_core::claims::CallOk;
use mesh_core::membership::Profile;
use mesh_core::node::Dest;
use mesh_core::process::Delivery;

/// The strong name of the service.
pub const SERVICE: &str = "billing";

/// What the command line says.
pub struct Options {
    /// `serve` or `ask`.
    pub role: String,
    /// Node name (the DNS name in the certificate).
    pub name: String,
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// Peers to join through.
    pub seeds: Vec<SocketAddr>,
    /// The quorum plane's voters (3 or 5 names, the same everywhere).
    pub voters: Vec<String>,
    /// Data directory (required on a voter).
    pub data_dir: Option<PathBuf>,
}

/// Reads `serve|ask --name N --bind ADDR --voters A,B,C [--data-dir DIR] [--seed ADDR]...`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, Box<dyn Error>> {
    let mut args = args.into_iter();
    let role = args
        .next()
        .ok_or("usage: strong_name serve|ask --name NAME ...")?;
    let (mut name, mut bind, mut seeds, mut voters, mut data_dir) =
        (None, None, Vec::new(), Vec::new(), None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value),
            "--bind" => bind = Some(value.parse()?),
            "--seed" => seeds.push(value.parse()?),
            "--voters" => voters = value.split(',').map(str::to_owned).collect(),
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let name = name.ok_or("--name is required")?;
    let bind = bind.ok_or("--bind is required")?;
    Ok(Options {
        role,
        name,
        bind,
        seeds,
        voters,
        data_dir,
    })
}

/// Starts the agent and plays the role.
pub async fn run(opts: Options) -> Result<(), Box<dyn Error>> {
    let pem = |var: &str| {
        std::env::var(var)
            .map(String::into_bytes)
            .map_err(|_| format!("{var} is not set"))
    };
    let tls = Tls::Pem {
        ca: pem("MESH_CA_PEM")?,
        cert: pem("MESH_CERT_PEM")?,
        key: pem("MESH_KEY_PEM")?,
    };
    let mut builder = Agent::builder(&opts.name, tls)
        .bind(opts.bind)
        .seeds(opts.seeds)
        .voters(opts.voters)
        .profile(Profile::Local)
        .no_admin();
    if let Some(dir) = opts.data_dir {
        builder = builder.data_dir(dir);
    }
    let agent = builder.start().await?;
    println!("started {}", opts.name);
    let me = agent.spawn(None).await?;
    match opts.role.as_str() {
        "serve" => {
            // Register, or stand by until the name is free.
            let version = loop {
                match agent.register_strong(SERVICE, me.pid().clone(), true).await {
                    Ok(CallOk::Registered { version, .. }) => break version,
                    Ok(other) => return Err(format!("unexpected answer: {other:?}").into()),
                    Err(ApiError::Failed(_taken_or_no_quorum)) => {
                        tokio::time::sleep(Duration::from_millis(300)).await
                    }
                    Err(stopped) => return Err(stopped.into()),
                }
            };
            println!("serving {SERVICE} on {} version={version}", opts.name);
            while let Some(delivery) = me.recv().await {
                if let Delivery::Message {
                    from: Some(from),
                    payload,
                } = delivery
                {
                    let mut answer = format!("{SERVICE}@{}: ", opts.name).into_bytes();
                    answer.extend_from_slice(&payload);
                    // The asker may be gone already: say so and go on serving.
                    let reply = Dest::Pid(from);
                    match agent
                        .send(Some(me.pid().clone()), reply, answer.into())
                        .await
                    {
                        Ok(_) => println!("answered {} bytes", payload.len()),
                        Err(ApiError::Failed(e)) => println!("could not answer: {e}"),
                        Err(stopped) => return Err(stopped.into()),
                    }
                }
            }
            Ok(())
        }
        "ask" => {
            let question = format!("hello from {}", opts.name);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                // Refused while this node's cache has no owner for the name yet.
                let sent = agent
                    .send(
                        Some(me.pid().clone()),
                        Dest::Strong(SERVICE.into()),
                        question.clone().into(),
                    )
                    .await;
                if let Err(e) = sent {
                    // Refused (no owner in the cache yet): a linearizable lookup fills
                    // the cache; a stopped agent ends the example.
                    e.into_failed()?;
                    if let Err(e) = agent.whereis_strong(SERVICE, true).await {
                        e.into_failed()?;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                let wait = tokio::time::timeout(Duration::from_secs(3), me.recv()).await;
                if let Ok(Some(Delivery::Message { payload, .. })) = wait {
                    println!("answer {}", String::from_utf8_lossy(&payload));
                    agent.leave(Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
            Err(format!("no answer from {SERVICE} within 60 s").into())
        }
        other => Err(format!("unknown role {other:?}: use serve or ask").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(parse(std::env::args().skip(1))?).await
}
