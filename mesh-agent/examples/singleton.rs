//! A leader-elected singleton: every copy campaigns for the election `singleton`
//! (`AgentHandle::run_while_leader`); the leader does the work, each step fenced by its
//! token, and its work is cancelled before its leadership's validity ends. The others
//! stand by and retry with the core's backoff; when the leader dies its claim expires
//! (after the TTL) and one of them takes over with a larger token.
//!
//! Fencing: a token is strictly larger for every new holder, so the resource the work
//! writes to (here a file, [`Fence`]) refuses any write carrying a smaller token than
//! one it has seen. A paused old leader that wakes up cannot overwrite a newer one.
//!
//! TLS comes from memory (`MESH_CA_PEM`, `MESH_CERT_PEM`, `MESH_KEY_PEM`); no admin
//! HTTP API. Claims need the quorum plane: three voters, each with a data directory:
//!
//! ```text
//! singleton --name s1 --bind 127.0.0.1:7001 --voters s1,s2,s3 --data-dir /tmp/s1 --fence /tmp/work.log
//! singleton --name s2 --bind 127.0.0.1:7002 --voters s1,s2,s3 --data-dir /tmp/s2 --fence /tmp/work.log --seed 127.0.0.1:7001
//! singleton --name s3 ...
//! ```

use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_agent::runtime::{Agent, Tls};
use mesh_core::membership::Profile;

/// The task the copies compete for.
pub const TASK: &str = "singleton";

/// What the command line says.
pub struct Options {
    /// Node name (the DNS name in the certificate).
    pub name: String,
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// Peers to join through.
    pub seeds: Vec<SocketAddr>,
    /// The quorum plane's voters (3 or 5 names, the same everywhere).
    pub voters: Vec<String>,
    /// This node's data directory (a voter's acceptor state).
    pub data_dir: PathBuf,
    /// The claim's TTL.
    pub ttl: Duration,
    /// The fenced resource: a file of `token step` lines.
    pub fence: PathBuf,
}

/// Reads `--name N --bind ADDR --voters A,B,C --data-dir DIR --fence FILE
/// [--seed ADDR]... [--ttl-ms MS]`.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, Box<dyn Error>> {
    let mut args = args.into_iter();
    let (mut name, mut bind, mut seeds, mut voters) = (None, None, Vec::new(), Vec::new());
    let (mut data_dir, mut fence, mut ttl) = (None, None, Duration::from_secs(10));
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value),
            "--bind" => bind = Some(value.parse()?),
            "--seed" => seeds.push(value.parse()?),
            "--voters" => voters = value.split(',').map(str::to_owned).collect(),
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--fence" => fence = Some(PathBuf::from(value)),
            "--ttl-ms" => ttl = Duration::from_millis(value.parse()?),
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(Options {
        name: name.ok_or("--name is required")?,
        bind: bind.ok_or("--bind is required")?,
        seeds,
        voters,
        data_dir: data_dir.ok_or("--data-dir is required")?,
        ttl,
        fence: fence.ok_or("--fence is required")?,
    })
}

/// A resource that honours fencing tokens: it refuses a write whose token is smaller
/// than the largest it has accepted. (A file locked for each write, standing in for a
/// database or a storage service that checks the token.)
pub struct Fence {
    path: PathBuf,
}

impl Fence {
    /// The resource kept in `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Appends `token step` unless a larger token was written before; returns whether
    /// the write was accepted.
    pub fn write(&self, token: u64, step: u64) -> std::io::Result<bool> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        file.lock()?;
        let accepted = Self::highest(&mut file)?.is_none_or(|seen| token >= seen);
        if accepted {
            writeln!(file, "{token} {step}")?;
            file.sync_data()?;
        }
        file.unlock()?;
        Ok(accepted)
    }

    fn highest(file: &mut File) -> std::io::Result<Option<u64>> {
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .max())
    }
}

/// Prints `stopped token=T` when the leader's work ends, also when it is cancelled
/// (its future dropped) because leadership is about to end.
struct Stopped(u64);

impl Drop for Stopped {
    fn drop(&mut self) {
        println!("stopped token={}", self.0);
    }
}

/// Starts the agent and, through [`AgentHandle::run_while_leader`], campaigns for the
/// election [`TASK`]: while it leads it works, each step fenced by its token; the work
/// is cancelled before the leadership's validity ends, and the agent campaigns again.
/// Returns only if the fence refuses a write (a newer leader wrote).
///
/// [`AgentHandle::run_while_leader`]: mesh_agent::runtime::AgentHandle::run_while_leader
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
    let agent = Agent::builder(&opts.name, tls)
        .bind(opts.bind)
        .seeds(opts.seeds)
        .voters(opts.voters)
        .data_dir(opts.data_dir)
        .claims_ttl(opts.ttl)
        .profile(Profile::Local)
        .no_admin()
        .start()
        .await?;
    println!("started {}", opts.name);
    let fence = &Fence::new(opts.fence);
    let name = opts.name.as_str();

    // Campaign (retrying with the core's backoff while another leads), then work until
    // the work is cancelled (leadership about to end: campaign again) or fenced out.
    let fenced = agent
        .run_while_leader(TASK, move |token| async move {
            println!("leader {name} token={token}");
            let _stopped = Stopped(token);
            for step in 0.. {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match fence.write(token, step) {
                    Ok(true) => println!("work token={token} step={step}"),
                    Ok(false) => {
                        println!("fenced out token={token}");
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await;
    agent.leave(Duration::from_secs(1)).await;
    match fenced {
        Ok(done) => Ok(done?),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run(parse(std::env::args().skip(1))?).await
}
