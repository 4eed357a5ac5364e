//! The frame decoder on hostile input: random bytes never panic, never allocate more than
//! the cap (measured with a counting global allocator), and valid frames round-trip.
// Needs the default `gpu` feature (the trainer's GPU half).
#![cfg(feature = "gpu")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use limpq_trainer::daemon::protocol::{
    decode, read_frame, read_message, write_message, FrameError, Request, Response,
};
use proptest::prelude::*;

/// Records the largest single allocation made on this thread while `TRACK` is set.
struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// bookkeeping only touches const-initialised thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Largest allocation made by `f` on this thread.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let r = f();
    TRACK.with(|t| t.set(false));
    (r, LARGEST.with(|l| l.get()))
}

const CAP: usize = 4096;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_or_allocate_past_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let (r, largest) = largest_alloc(|| read_frame(&mut Cursor::new(&bytes), CAP));
        prop_assert!(largest <= CAP, "allocated {} bytes", largest);
        match r {
            Ok(body) => {
                prop_assert!(body.len() <= CAP);
                let _ = decode::<Request>(&body);
            }
            Err(FrameError::TooLarge { len, .. }) => prop_assert!(len > CAP),
            Err(_) => {}
        }
    }

    #[test]
    fn huge_lengths_are_refused_without_allocating(len in (CAP as u32 + 1)..=u32::MAX, tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let (r, largest) = largest_alloc(|| read_frame(&mut Cursor::new(&bytes), CAP));
        prop_assert!(matches!(r, Err(FrameError::TooLarge { .. })), "not refused");
        prop_assert!(largest <= CAP, "allocated {} bytes", largest);
    }

    #[test]
    fn random_text_bodies_give_errors_not_panics(text in "\\PC{0,200}") {
        let mut frame = (text.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(text.as_bytes());
        let _ = read_message::<Request>(&mut Cursor::new(&frame), CAP);
    }

    #[test]
    fn truncated_frames_are_reported(body in "[a-zA-Z]{1,100}", cut in 0usize..100) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body.as_bytes());
        let cut = cut % frame.len();
        let r = read_frame(&mut Cursor::new(&frame[..cut]), CAP);
        if cut == 0 {
            prop_assert!(matches!(r, Err(FrameError::Closed)), "not closed");
        } else {
            prop_assert!(matches!(r, Err(FrameError::Truncated { .. })), "{:?}", r);
        }
    }
}

#[test]
fn messages_round_trip_and_oversized_ones_are_not_sent() {
    let mut buf = Vec::new();
    for req in [
        Request::List,
        Request::Watch(7),
        Request::Cancel(3),
        Request::Shutdown,
        Request::Status(1),
    ] {
        buf.clear();
        write_message(&mut buf, &req, CAP).unwrap();
        assert_eq!(
            read_message::<Request>(&mut Cursor::new(&buf), CAP).unwrap(),
            req
        );
    }
    let big = Response::Error("x".repeat(CAP));
    buf.clear();
    assert!(matches!(
        write_message(&mut buf, &big, CAP),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(buf.is_empty(), "nothing written");
}

#[test]
fn the_allocation_counter_sees_allocations() {
    let (v, largest) = largest_alloc(|| Vec::<u8>::with_capacity(10_000));
    assert!(v.capacity() >= 10_000);
    assert!(largest >= 10_000, "counter saw {largest}");
}

/// A body nested past the RON reader's limit is a malformed frame whose message is for
/// the client, not advice about the reader's options.
#[test]
fn deeply_nested_bodies_are_refused_in_plain_words() {
    let body = format!("{}{}", "[".repeat(500), "]".repeat(500));
    match decode::<serde::de::IgnoredAny>(body.as_bytes()) {
        Err(FrameError::Malformed(m)) => {
            assert!(m.contains("nested too deeply"), "{m}");
            assert!(!m.contains("serde_stacker"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}
