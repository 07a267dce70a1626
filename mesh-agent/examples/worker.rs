//! A worker: joins the group `workers` and answers every message with `echo: ` and the
//! message; or, as `ask`, sends one question to a worker and prints the answer.
//!
//! The agent takes its TLS identity from memory (PEM in the environment variables
//! `MESH_CA_PEM`, `MESH_CERT_PEM` and `MESH_KEY_PEM`, as a secret store hands it
//! over) and runs without the admin HTTP API (no TCP listener at all):
//!
//! ```text
//! worker serve --name w1 --bind 127.0.0.1:7001
//! worker ask   --name c1 --bind 127.0.0.1:7002 --seed 127.0.0.1:7001
//! ```

use std::error::Error;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesh_agent::runtime::{Agent, ApiError, Tls};
use mesh_core::membership::Profile;
use mesh_core::node::{Dest, GroupMode};
use mesh_core::process::Delivery;

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
}

/// Reads `serve|ask --name NAME --bind ADDR [--seed ADDR]...`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, Box<dyn Error>> {
    let mut args = args.into_iter();
    let role = args
        .next()
        .ok_or("usage: worker serve|ask --name NAME --bind ADDR")?;
    let (mut name, mut bind, mut seeds) = (None, None, Vec::new());
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value),
            "--bind" => bind = Some(value.parse()?),
            "--seed" => seeds.push(value.parse()?),
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
    })
}

/// The TLS identity, from PEM held in memory.
fn tls_from_env() -> Result<Tls, Box<dyn Error>> {
    let pem = |var: &str| {
        std::env::var(var)
            .map(String::into_bytes)
            .map_err(|_| format!("{var} is not set"))
    };
    Ok(Tls::Pem {
        ca: pem("MESH_CA_PEM")?,
        cert: pem("MESH_CERT_PEM")?,
        key: pem("MESH_KEY_PEM")?,
    })
}

/// Starts the agent and plays the role.
pub async fn run(opts: Options) -> Result<(), Box<dyn Error>> {
    let agent = Agent::builder(&opts.name, tls_from_env()?)
        .bind(opts.bind)
        .seeds(opts.seeds)
        .profile(Profile::Local)
        .no_admin()
        .start()
        .await?;
    // A process: a mailbox with a PID.
    let me = agent.spawn(None).await?;
    let workers = "workers".to_owned();
    match opts.role.as_str() {
        "serve" => {
            agent.join("default", &[workers], me.pid(), None).await?;
            println!("ready {} {}", opts.name, me.pid());
            while let Some(delivery) = me.recv().await {
                if let Delivery::Message {
                    from: Some(from),
                    payload,
                } = delivery
                {
                    let mut answer = b"echo: ".to_vec();
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
            // Wait until a worker is in the group, as this node sees it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while agent.members_of("default", &workers).await?.is_empty() {
                if Instant::now() > deadline {
                    return Err("no worker joined within 30 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let question = format!("hello from {}", opts.name);
            let to = Dest::Group {
                scope: "default".into(),
                group: workers,
                mode: GroupMode::One,
            };
            // A send is not acknowledged here: ask again if no answer comes.
            for _ in 0..5 {
                agent
                    .send(Some(me.pid().clone()), to.clone(), question.clone().into())
                    .await?;
                let wait = tokio::time::timeout(Duration::from_secs(3), me.recv()).await;
                if let Ok(Some(Delivery::Message { payload, .. })) = wait {
                    println!("answer {}", String::from_utf8_lossy(&payload));
                    agent.leave(Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
            Err("no answer after 5 tries".into())
        }
        other => Err(format!("unknown role {other:?}: use serve or ask").into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(parse(std::env::args().skip(1))?).await
}
