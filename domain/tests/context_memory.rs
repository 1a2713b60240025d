//! How much heap an evaluation context holds per byte of its environment document's text.
//! Servers keep one context per environment and weigh their caches by this ratio
//! ([`CONTEXT_BYTES_PER_DOCUMENT_BYTE`]), so it must hold for real documents: a context that grew
//! (say, metadata held as maps again) would make a cache bound a lie.
//!
//! Its own test binary, with one test: the counting allocator sees only what that test does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use domain::flagsmith::CONTEXT_BYTES_PER_DOCUMENT_BYTE;

mod reference;

/// Counts the bytes live on the heap, each allocation as glibc's malloc sizes its chunk (the
/// request and an 8-byte header, rounded up to 16, at least 32).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

fn chunk(layout: Layout) -> isize {
    (((layout.size() + 8 + 15) & !15).max(32)) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(chunk(layout), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(chunk(layout), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_context_holds_at_most_the_documented_heap_per_document_byte() {
    let mut ratios = Vec::new();
    for (name, document) in reference::documents() {
        let text = serde_json::to_string(&document).unwrap();
        let before = LIVE.load(Ordering::Relaxed);
        let context = document.to_evaluation_context();
        let held = LIVE.load(Ordering::Relaxed) - before;
        drop(context);
        let ratio = held as f64 / text.len() as f64;
        println!(
            "{name}: {} B of text, {held} B of context ({ratio:.2}x)",
            text.len()
        );
        assert!(
            ratio <= CONTEXT_BYTES_PER_DOCUMENT_BYTE,
            "{name}: the context holds {ratio:.2} bytes per byte of document, more than the \
             {CONTEXT_BYTES_PER_DOCUMENT_BYTE} caches are weighed by"
        );
        ratios.push(ratio);
    }
    assert_eq!(ratios.len(), 9, "the 8 seeds and the legacy document");
    // The bound is not wildly pessimistic either: a cache would then hold far fewer
    // environments than its memory allows.
    let largest = ratios.iter().copied().fold(0.0, f64::max);
    assert!(
        largest >= CONTEXT_BYTES_PER_DOCUMENT_BYTE * 0.6,
        "the largest ratio is {largest:.2}: lower CONTEXT_BYTES_PER_DOCUMENT_BYTE"
    );
}
