//! `loadtest summary DIR...`: one table of every run report in the given
//! folders, so that a benchmark script of a dozen scenarios ends with its
//! figures side by side instead of a dozen summaries scrolled away. Reads
//! `loadtest run`'s reports and `bench/socketio`'s, which use the same
//! keys; other JSON files are passed over.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Folders holding `*.json` reports (`bench/results/...`).
    #[arg(required = true)]
    folders: Vec<PathBuf>,
}

const HEADER: [&str; 15] = [
    "run",
    "connected",
    "connect p99 ms",
    "acked/s",
    "delivered/s",
    "lost/dup/ooo",
    "never arrived",
    "unacked",
    "ack p99 ms",
    "delivery p99 ms",
    "scenario p99/max ms",
    "KiB/conn",
    "CPU-s/1M",
    "idle %",
    "problems",
];

pub fn run(args: SummaryArgs) -> anyhow::Result<()> {
    let mut rows = vec![HEADER.map(str::to_owned).to_vec()];
    for folder in &args.folders {
        let mut reports: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(|e| anyhow::anyhow!("{}: {e}", folder.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|x| x == "json"))
            .collect();
        reports.sort();
        for path in reports {
            if let Some(row) = read(&path, args.folders.len() > 1) {
                rows.push(row);
            }
        }
    }
    if rows.len() == 1 {
        anyhow::bail!(
            "no run reports in {}",
            args.folders.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    print!("{}", table(&rows));
    Ok(())
}

/// One report's row, or `None` for a JSON file that is not a run report.
fn read(path: &Path, with_folder: bool) -> Option<Vec<String>> {
    let report: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let counters = report.get("counters")?;
    let count = |key: &str| counters[key].as_u64().unwrap_or(0);
    let figure =
        |value: &Value, decimals: usize| value.as_f64().map_or("–".to_owned(), |v| format!("{v:.decimals$}"));
    let p99 = |kind: &str| figure(&report["latency"][kind]["p99_ms"], 1);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.parent().and_then(Path::file_name) {
        Some(folder) if with_folder => format!("{}/{stem}", folder.to_string_lossy()),
        _ => stem,
    };
    let scenario = match (&report["latency"]["scenario"]["p99_ms"], &report["latency"]["scenario"]["max_ms"]) {
        (p99, max) if p99.is_number() => format!("{}/{}", figure(p99, 0), figure(max, 0)),
        _ => "–".to_owned(),
    };
    let server = &report["server"];
    let kib = server["rss_per_connection_bytes"].as_f64().map(|b| Value::from(b / 1024.0)).unwrap_or(Value::Null);
    let cpu = match server["cpu_seconds_per_million_deliveries"].as_f64() {
        Some(v) if v > 0.0 => format!("{v:.2}"),
        _ => "–".to_owned(),
    };
    Some(vec![
        name,
        count("connected").to_string(),
        p99("connect"),
        figure(&report["messages_acked_per_second"], 0),
        figure(&report["deliveries_per_second"], 0),
        format!(
            "{}/{}/{}",
            report["lost_deliveries"].as_u64().unwrap_or(0),
            count("duplicates"),
            count("out_of_order")
        ),
        counters["never_arrived"].as_u64().map_or("–".to_owned(), |n| n.to_string()),
        count("sent").saturating_sub(count("acked")).to_string(),
        p99("send_to_ack"),
        p99("send_to_delivery"),
        scenario,
        figure(&kib, 2),
        cpu,
        figure(
            &report["machine"]["idle_share_measured"].as_f64().map(|s| Value::from(s * 100.0)).unwrap_or(Value::Null),
            0,
        ),
        // What failed the run (its summary says which); "–" in reports
        // that do not list them (`bench/socketio`'s, and before 2026-12-07).
        report["problems"].as_array().map_or("–".to_owned(), |found| found.len().to_string()),
    ])
}

/// Columns padded to their widest cell, the first left-aligned, the
/// figures right-aligned.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = " ".repeat(widths[c] - cell.chars().count());
                if c == 0 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_one_row_and_other_json_is_passed_over() {
        let dir = std::env::temp_dir().join(format!("loadtest-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let report = serde_json::json!({
            "counters": {"connected": 2000, "sent": 40_000, "acked": 39_996, "duplicates": 1, "out_of_order": 2, "never_arrived": 5},
            "lost_deliveries": 3,
            "messages_acked_per_second": 1999.6,
            "deliveries_per_second": 19996.2,
            "latency": {"connect": {"p99_ms": 21.84}, "send_to_ack": {"p99_ms": 7.84}, "send_to_delivery": {"p99_ms": 7.91}, "scenario": null},
            "server": {"rss_per_connection_bytes": 7680.0, "cpu_seconds_per_million_deliveries": 31.712},
            "machine": {"idle_share_measured": 0.124},
            "problems": ["deliveries broke the guarantee: 3 lost, 1 duplicated, 2 out of order, 5 never arrived"],
        });
        std::fs::write(dir.join("ack-latency.json"), report.to_string()).expect("write");
        std::fs::write(dir.join("other.json"), "{\"pids\": []}").expect("write");
        let row = read(&dir.join("ack-latency.json"), false).expect("a report");
        assert_eq!(
            row,
            [
                "ack-latency",
                "2000",
                "21.8",
                "2000",
                "19996",
                "3/1/2",
                "5",
                "4",
                "7.8",
                "7.9",
                "–",
                "7.50",
                "31.71",
                "12",
                "1"
            ]
        );
        assert!(read(&dir.join("other.json"), false).is_none());
        // A report from before the counts says so, not zero.
        let mut older = report.clone();
        older["counters"].as_object_mut().expect("counters").remove("never_arrived");
        older.as_object_mut().expect("report").remove("problems");
        std::fs::write(dir.join("older.json"), older.to_string()).expect("write");
        let row_of_older = read(&dir.join("older.json"), false).expect("a report");
        assert_eq!((row_of_older[6].as_str(), row_of_older[14].as_str()), ("–", "–"));
        let printed = table(&[HEADER.map(str::to_owned).to_vec(), row]);
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].chars().count(), lines[1].chars().count(), "columns line up:\n{printed}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
