//! Memory benchmark: live heap bytes per idle connected ICE agent (one component, four host
//! candidates on each side, so 16 pairs), ours (`jingle_ice::ice::Agent`) against str0m's
//! `is::IceAgent` 0.12 brought to the same state the same way, measured in the same run with a
//! counting global allocator.
//!
//! Both pairs of agents are connected back to back in virtual time (10 ms one way), left idle
//! for 60 s of virtual time (consent checks / keepalives running), then taken out of the
//! harness, which is dropped; what is still allocated is the two agents (each boxed, so its
//! inline size counts too). The figures are deterministic, so a quick run
//! (`cargo test --all-targets`) measures the same thing as `cargo bench`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::b2b::{ours_pair, theirs_pair, BackToBack, Peer};
use common::Table;

/// The system allocator, counting live bytes and allocations.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Host candidates per agent.
const CANDIDATES: u8 = 4;
/// One-way delay of the back-to-back link.
const DELAY: Duration = Duration::from_millis(10);
/// Virtual time the connected agents are left idle before measuring.
const IDLE: Duration = Duration::from_secs(60);

struct Figures {
    bytes_per_agent: isize,
    connected_ms: Option<u128>,
    completed_ms: Option<u128>,
}

/// Connects a pair made by `make`, idles it, and measures what the two agents keep.
fn measure<A: Peer, B: Peer>(make: impl Fn(Instant) -> BackToBack<A, B>) -> Figures {
    // Once to warm up lazily allocated process state (RNG, thread locals), then measured.
    for round in 0..2 {
        let start = Instant::now();
        let before = live();
        let mut pair = make(start);
        pair.run_to_completion(Duration::from_secs(30));
        let (connected, completed) = (pair.both_connected, pair.both_completed);
        let idle_until = pair.now() - start + IDLE;
        pair.run_until(idle_until, |_| false);
        let still_connected = pair.a.connected() && pair.b.connected();
        let (a, b) = pair.into_agents();
        let after = live();
        drop((a, b));
        assert!(connected.is_some(), "the agents did not connect");
        assert!(
            still_connected,
            "the agents did not stay connected while idle"
        );
        if round == 1 {
            return Figures {
                bytes_per_agent: (after - before) / 2,
                connected_ms: connected.map(|d| d.as_millis()),
                completed_ms: completed.map(|d| d.as_millis()),
            };
        }
    }
    unreachable!("the loop returns in its second round")
}

fn main() {
    let ours = measure(|start| ours_pair(CANDIDATES, DELAY, start));
    let theirs = measure(|start| theirs_pair(CANDIDATES, DELAY, start));

    let mut table = Table::new(
        &format!(
            "Memory: live heap bytes per idle connected agent (1 component, {} host candidates \
             a side, {} s idle)",
            CANDIDATES,
            IDLE.as_secs()
        ),
        &["agent", "bytes / agent", "inline size", "ratio"],
    );
    table.row(vec![
        "jingle-ice Agent".into(),
        ours.bytes_per_agent.to_string(),
        std::mem::size_of::<jingle_ice::ice::Agent>().to_string(),
        common::ratio(ours.bytes_per_agent as f64, theirs.bytes_per_agent as f64),
    ]);
    table.row(vec![
        "is 0.12 IceAgent (baseline)".into(),
        theirs.bytes_per_agent.to_string(),
        std::mem::size_of::<is::IceAgent>().to_string(),
        "1.00x".into(),
    ]);
    table.print();
    println!(
        "bytes / agent includes the boxed agent itself (inline size). Virtual time to both \
         connected / completed (20 ms round trip): ours {:?} / {:?} ms, is {:?} / {:?} ms.",
        ours.connected_ms, ours.completed_ms, theirs.connected_ms, theirs.completed_ms
    );
}
