//! Noisy-neighbour benchmark (issue 5): a benign tenant's `echo` latency with
//! and without a neighbour tenant saturating its own process limit with
//! CPU-bound guests, on one server. Prints p50/p90 for both and the ratio.
//!
//! Run: `cargo bench --bench fairness` (a plain `main`, no harness).

use std::sync::Arc;
use std::time::{Duration, Instant};
use wasm_exec_server::client::Client;
use wasm_exec_server::config::{Limits, TenantSpec, WorkspaceConfig};
use wasm_exec_server::exec::Runtime;
use wasm_exec_server::tenant::{Gate, Tenant, TenantEntry, digest_of_token};

const SAMPLES: usize = 300;
const NOISY_PROCESSES: usize = 8;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(url: &str, label: &str) -> (Duration, Duration) {
    let c = Client::connect_with(url, Some("benign")).await.expect("connect");
    c.initialize().await.expect("initialize");
    let mut times = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        let f = c
            .run(
                &format!("{label}-{i}"),
                &["/bin/bash", "-lc", "echo-args hi"],
                "file:///workspace",
            )
            .await
            .expect("run");
        times.push(t.elapsed());
        assert_eq!(f.stdout, b"hi\n");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.9))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = std::env::temp_dir().join("wes-bench-module-cache");
        let mut runtime = Runtime::new(Some(cache)).expect("engine");
        runtime.add_examples().expect("examples");
        let runtime = Arc::new(runtime);
        let mut entries = Vec::new();
        for (id, processes) in [("benign", 64), ("noisy", NOISY_PROCESSES)] {
            let root = dir.path().join(id);
            std::fs::create_dir(&root).expect("mkdir");
            let workspace = WorkspaceConfig {
                visible: Some("/workspace".into()),
                read_only: Vec::new(),
                scratch_parent: Some(dir.path().into()),
                ..WorkspaceConfig::new(&root)
            };
            let limits = Limits { max_processes: processes, ..Limits::default() };
            let digest = digest_of_token(id).expect("token");
            let spec = TenantSpec { id: id.into(), digest: Some(digest), workspace, limits };
            let tenant = Arc::new(Tenant::from_spec(&spec, runtime.clone()).expect("workspace"));
            entries.push(TenantEntry { digest, tenant });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(wasm_exec_server::server::run(
            listener,
            Gate::Tokens(entries),
            async {
                let _ = stop_rx.await;
            },
            Duration::from_secs(1),
        ));

        // Warm-up, then the quiet baseline.
        measure(&url, "warm").await;
        let (quiet_p50, quiet_p90) = measure(&url, "quiet").await;

        // The neighbour fills every process slot it has with spinning guests.
        let noisy = Client::connect_with(&url, Some("noisy")).await.expect("connect");
        noisy.initialize().await.expect("initialize");
        for i in 0..NOISY_PROCESSES {
            noisy
                .start(&format!("spin{i}"), &["spin"], "file:///workspace", serde_json::json!({}))
                .await
                .expect("spin");
        }
        let over =
            noisy.start("one-more", &["spin"], "file:///workspace", serde_json::json!({})).await;
        assert!(over.is_err(), "the neighbour should be at its process limit");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (noisy_p50, noisy_p90) = measure(&url, "noisy").await;

        println!(
            "benign tenant: `bash -lc 'echo-args hi'` (a wasm instance), {SAMPLES} sequential \
             commands, start to closed"
        );
        println!("{:<44} {:>10} {:>10}", "", "p50", "p90");
        println!("{:<44} {:>10.3?} {:>10.3?}", "alone", quiet_p50, quiet_p90);
        println!(
            "{:<44} {:>10.3?} {:>10.3?}",
            format!("neighbour spinning on all {NOISY_PROCESSES} of its slots"),
            noisy_p50,
            noisy_p90
        );
        println!(
            "ratio (noisy / alone): p50 {:.2}x, p90 {:.2}x",
            noisy_p50.as_secs_f64() / quiet_p50.as_secs_f64(),
            noisy_p90.as_secs_f64() / quiet_p90.as_secs_f64()
        );
        drop(noisy);
        let _ = stop_tx.send(());
        let _ = server.await;
    });
}
