//! Both ends of one SPSC ring in one process, each on a mapping of its own (opened by name
//! twice), with a third party rewriting the ring's shared words: a safe API must never hand
//! out a grant (`&mut [u8]`) and a message (`&[u8]`) over the same bytes. The ends tell each
//! other, in this process's own memory, how far they really got.

mod common;

use common::{RingName, patch};
use shmring::{TryRecvError, TrySendError, spsc};

/// Offsets in the object: the consumer's `head` (control block after the header page) and
/// the first record header (the data region, on the next page).
const HEAD: u64 = 4096 + 128;
const TAIL: u64 = 4096;
const DATA: u64 = 8192;
const READY: u64 = 1 << 62;

fn pair(tag: &str) -> (RingName, spsc::Producer, spsc::Consumer) {
    let name = RingName::new(tag);
    let tx = spsc::Producer::create(
        name.as_str(),
        spsc::Config::default()
            .capacity_bytes(4096)
            .max_message_bytes(56),
    )
    .expect("create");
    let rx = spsc::Consumer::open(name.as_str()).expect("open");
    (name, tx, rx)
}

fn read_u64(name: &RingName, offset: u64) -> u64 {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(name.dev_shm_path()).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut b = [0; 8];
    f.read_exact(&mut b).unwrap();
    u64::from_ne_bytes(b)
}

#[test]
fn a_forged_head_gives_no_room_over_a_lent_message() {
    let (name, mut tx, mut rx) = pair("same-head");
    let mut sent = 0u8;
    while tx.try_send(&[sent; 56]).is_ok() {
        sent += 1;
    }
    let m = rx.try_recv().expect("a message");
    assert_eq!(&*m, &[0; 56]);
    // A third party says everything was released.
    let tail = read_u64(&name, TAIL);
    patch(&name, HEAD, &tail.to_ne_bytes());
    // The consumer of this process released nothing: the ring is as full as it was, and no
    // grant may cover the message it still holds.
    match tx.try_reserve(56) {
        Err(TrySendError::Full(())) => {}
        Ok(_) => panic!("a grant over a ring whose consumer released nothing"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert_eq!(&*m, &[0; 56], "the lent message changed");
    drop(m);
    // The room the consumer really released is granted (and is not the message's any more).
    let mut g = tx.try_reserve(56).expect("room released by the consumer");
    g.fill(0xEE);
    g.commit(56).unwrap();
    for i in 1..sent {
        assert_eq!(&*rx.try_recv().expect("queued"), &[i; 56]);
    }
    assert_eq!(&*rx.try_recv().unwrap(), &[0xEE; 56]);
}

#[test]
fn a_forged_header_lends_no_message_over_a_live_grant() {
    let (name, mut tx, mut rx) = pair("same-header");
    let mut g = tx.try_reserve(56).expect("room");
    g.fill(7);
    // A third party marks the record the producer is writing as published.
    patch(&name, DATA, &(READY | 56).to_ne_bytes());
    match rx.try_recv() {
        Err(TryRecvError::Corrupted(c)) => assert!(c.what.contains("published"), "{c}"),
        Ok(_) => panic!("a message over the producer's live grant"),
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert!(g.iter().all(|&b| b == 7));
    g.commit(56).unwrap();
}

#[test]
fn ends_in_one_process_that_follow_the_protocol_are_not_slowed_or_refused() {
    let (_name, mut tx, mut rx) = pair("same-normal");
    let consumer = std::thread::spawn(move || {
        let mut n = 0u32;
        while let Ok(m) = rx.recv() {
            assert_eq!(&*m, &(n % 251).to_le_bytes()[..1].repeat(56)[..]);
            n += 1;
        }
        n
    });
    for n in 0..20_000u32 {
        tx.send(&(n % 251).to_le_bytes()[..1].repeat(56)).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), 20_000);
}
