//! `loadtest floor`: what the kernel alone charges a process for sending
//! small writes to many loopback TCP connections, which is the floor under
//! any server's CPU per delivery on this machine.
//!
//! This process writes `frame_bytes` to `connections` sockets at `rate`
//! writes per second, one write per message, as a gateway delivers one frame
//! to one connection. A child process (`loadtest floor-sink`) holds the other
//! ends and reads. Nothing is parsed, stored or routed: the writer's CPU
//! seconds per million writes is the cost of the write calls themselves
//! (with, on loopback, the receiving side's kernel work that runs in the
//! sender's call). `--via-tasks` adds what an event-driven server adds on
//! top: each write is done by the connection's own task, woken through its
//! queue.

use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::procstat;

#[derive(Debug, Args)]
pub struct FloorArgs {
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
    /// Writes per second, over all connections.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// Seconds of measured writing.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Bytes per write (a small chat event frame is about 200).
    #[arg(long, default_value_t = 200)]
    frame_bytes: usize,
    /// Write from one task per connection, woken through a queue.
    #[arg(long)]
    via_tasks: bool,
}

/// Where each write goes: straight to the socket, or to the connection's
/// writer task.
enum Targets {
    Direct(Vec<TcpStream>),
    Tasks(Vec<mpsc::Sender<()>>),
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let mut sink = tokio::process::Command::new(std::env::current_exe()?)
        .arg("floor-sink")
        .arg(address.to_string())
        .arg(args.connections.to_string())
        .kill_on_drop(true)
        .spawn()?;
    let sink_pid = sink.id().ok_or_else(|| anyhow::anyhow!("the sink process did not start"))?;
    let connections = args.connections as usize;
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    let frame = vec![b'x'; args.frame_bytes];
    let mut targets = if args.via_tasks {
        let mut queues = Vec::with_capacity(streams.len());
        for mut stream in streams {
            let (queue, mut wakes) = mpsc::channel::<()>(64);
            let frame = frame.clone();
            tokio::spawn(async move {
                while wakes.recv().await.is_some() {
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
            queues.push(queue);
        }
        Targets::Tasks(queues)
    } else {
        Targets::Direct(streams)
    };

    let bar = ProgressBar::with_draw_target(Some(args.duration), crate::progress_target::stderr());
    bar.set_style(ProgressStyle::with_template("floor: {bar:40} {pos}/{len} s {msg}")?);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (writer_before, sink_before) = (procstat::sample(&[std::process::id()]), procstat::sample(&[sink_pid]));
    let started = Instant::now();
    let (mut next, mut writes, mut failed) = (0usize, 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(args.duration) {
        tick.tick().await;
        // What the rate owes by now, so that rates below a write per tick,
        // or between whole thousands, are kept.
        let owed = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
        for _ in (writes + failed)..owed {
            let ok = match &mut targets {
                Targets::Direct(streams) => streams[next].write_all(&frame).await.is_ok(),
                Targets::Tasks(queues) => queues[next].try_send(()).is_ok(),
            };
            if ok {
                writes += 1;
            } else {
                failed += 1;
            }
            next = (next + 1) % connections;
        }
        bar.set_position(started.elapsed().as_secs());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (writer_after, sink_after) = (procstat::sample(&[std::process::id()]), procstat::sample(&[sink_pid]));
    bar.finish_and_clear();
    drop(targets);
    let _ = sink.kill().await;

    let writer_cpu = writer_after.cpu_seconds - writer_before.cpu_seconds;
    let sink_cpu = sink_after.cpu_seconds - sink_before.cpu_seconds;
    let per_million = |cpu: f64| if writes == 0 { 0.0 } else { cpu * 1e6 / writes as f64 };
    println!();
    println!("== loadtest floor: {} connections, {}-byte writes ==", args.connections, args.frame_bytes);
    println!(
        "  {:<34} {}",
        "mode",
        if args.via_tasks { "one task per connection, woken per write" } else { "direct writes" }
    );
    println!("  {:<34} {} ({:.0}/s), {} failed", "writes", writes, writes as f64 / elapsed, failed);
    println!("  {:<34} {:.2} ({:.2} per million writes)", "writer CPU s", writer_cpu, per_million(writer_cpu));
    println!("  {:<34} {:.2} ({:.2} per million writes)", "reader (sink) CPU s", sink_cpu, per_million(sink_cpu));
    Ok(())
}

/// The child process: connects `connections` sockets to `address` and reads
/// them until they close.
pub async fn sink(address: String, connections: usize) -> anyhow::Result<()> {
    let mut readers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = TcpStream::connect(&address).await?;
        readers.push(tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
        }));
    }
    for reader in readers {
        let _ = reader.await;
    }
    Ok(())
}
