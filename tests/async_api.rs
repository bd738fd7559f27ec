//! The async API in one process: cancellation safety, the message stream, zero copy, MPMC on
//! a multi-thread runtime, timeouts from the runtime, and byte streams (`tokio::io::copy`
//! between a ring and a TCP connection).

mod common;

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use common::RingName;
use futures_core::Stream;
use shmring::evented::{AsyncByteReader, AsyncConsumer, AsyncProducer, AsyncReceiver, AsyncSender};
use shmring::{RecvError, SendError, WaitStrategy, mpmc, spsc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A named ring, both ends in this process (the doorbell is the object's).
fn named_pair(tag: &str, capacity: usize) -> (RingName, AsyncProducer, AsyncConsumer) {
    let name = RingName::new(tag);
    let tx = spsc::Producer::create(
        name.as_str(),
        spsc::Config::default().capacity_bytes(capacity),
    )
    .unwrap();
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    rx.set_wait_strategy(WaitStrategy::Block);
    (
        name,
        AsyncProducer::new(tx).unwrap(),
        AsyncConsumer::new(rx).unwrap(),
    )
}

#[test]
fn dropping_a_pending_recv_loses_no_message() {
    current_thread().block_on(async {
        let (_name, mut tx, mut rx) = named_pair("async-cancel-recv", 4096);
        // Pending recvs, cut short by a timeout and dropped, while nothing is there.
        for _ in 0..5 {
            let r = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await;
            assert!(r.is_err(), "nothing was sent yet");
        }
        assert!(rx.wait_stats().sleeps >= 1, "recv never parked");
        // A sender task; the receiver keeps dropping recv futures raced against a timer
        // that often wins.
        let sender = tokio::spawn(async move {
            for i in 0u32..2000 {
                tx.send(&i.to_le_bytes()).await.unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        });
        let mut next = 0u32;
        let mut dropped = 0u32;
        while next < 2000 {
            tokio::select! {
                m = rx.recv() => {
                    assert_eq!(*m.unwrap(), next.to_le_bytes(), "lost or reordered");
                    next += 1;
                }
                () = tokio::time::sleep(Duration::from_micros(50)) => dropped += 1,
            }
        }
        sender.await.unwrap();
        assert_eq!(rx.recv().await.unwrap_err(), RecvError::Disconnected);
        assert!(dropped > 0, "no recv future was ever dropped pending");
    });
}

#[test]
fn dropping_a_pending_send_sends_nothing_and_loses_nothing() {
    current_thread().block_on(async {
        let (_name, mut tx, mut rx) = named_pair("async-cancel-send", 64);
        // Three 16-byte records fill the 64-byte ring (8 bytes stay free for the terminator).
        tx.send(&[1; 8]).await.unwrap();
        tx.send(&[2; 8]).await.unwrap();
        tx.send(&[4; 8]).await.unwrap();
        // The ring is full: a send waits; dropped, it sent nothing.
        let r = tokio::time::timeout(Duration::from_millis(20), tx.send(&[9; 8])).await;
        assert!(r.is_err(), "the ring was full");
        let r = tokio::time::timeout(Duration::from_millis(20), tx.reserve(8)).await;
        assert!(r.is_err(), "the ring was full");
        assert_eq!(&*rx.recv().await.unwrap(), &[1; 8]);
        tx.send(&[3; 8]).await.unwrap();
        assert_eq!(&*rx.recv().await.unwrap(), &[2; 8]);
        assert_eq!(&*rx.recv().await.unwrap(), &[4; 8]);
        assert_eq!(&*rx.recv().await.unwrap(), &[3; 8]);
        assert!(
            rx.get_mut().try_recv().is_err(),
            "the dropped send sent nothing"
        );
    });
}

#[test]
fn reserve_writes_in_place_and_the_stream_yields_owned_messages() {
    current_thread().block_on(async {
        let (_name, mut tx, mut rx) = named_pair("async-stream", 4096);
        let producer = tokio::spawn(async move {
            for i in 0u8..50 {
                let mut g = tx.reserve(16).await.unwrap();
                g[..3].copy_from_slice(&[i, i, i]);
                g.commit(3).unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(m) = poll_fn(|cx| Pin::new(&mut rx).poll_next(cx)).await {
            got.push(m.unwrap());
        }
        producer.await.unwrap();
        assert_eq!(got.len(), 50);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m, &[i as u8; 3]);
        }
        // Fused: ended for good.
        assert!(
            poll_fn(|cx| Pin::new(&mut rx).poll_next(cx))
                .await
                .is_none()
        );
    });
}

#[test]
fn a_send_to_a_closed_consumer_fails_and_hands_nothing_on() {
    current_thread().block_on(async {
        let (tx, rx) = spsc::channel(&spsc::Config::default()).unwrap();
        let mut tx = AsyncProducer::new(tx).unwrap();
        drop(rx);
        assert_eq!(tx.send(b"x").await, Err(SendError::Disconnected(())));
        let big = vec![0u8; tx.get_ref().max_message() + 1];
        assert!(matches!(
            tx.send(&big).await,
            Err(SendError::TooLarge { .. })
        ));
    });
}

#[test]
fn mpmc_senders_and_receivers_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let name = RingName::new("async-mpmc");
    let config = mpmc::Config::default().slots(8).max_message_bytes(48);
    let tx = mpmc::Sender::create(name.as_str(), config).unwrap();
    let rx = mpmc::Receiver::open(name.as_str()).unwrap();
    const PER: u64 = 5000;
    let total = rt.block_on(async move {
        let mut receivers = Vec::new();
        let rx2 = rx.try_clone().unwrap();
        for rx in [rx, rx2] {
            let mut rx = AsyncReceiver::new(rx).unwrap();
            receivers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Ok(m) = rx.recv().await {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&m[..8]);
                    got.push(u64::from_le_bytes(w));
                }
                got
            }));
        }
        let tx2 = tx.try_clone().unwrap();
        let mut senders = Vec::new();
        for (k, tx) in [tx, tx2].into_iter().enumerate() {
            let mut tx = AsyncSender::new(tx).unwrap();
            senders.push(tokio::spawn(async move {
                for i in 0..PER {
                    tx.send(&((k as u64) << 32 | i).to_le_bytes())
                        .await
                        .unwrap();
                }
            }));
        }
        for s in senders {
            s.await.unwrap();
        }
        let mut all = Vec::new();
        for r in receivers {
            let got = r.await.unwrap();
            // Each sender's messages arrive in order at every receiver.
            for k in 0..2u64 {
                let mine: Vec<u64> = got.iter().copied().filter(|w| w >> 32 == k).collect();
                assert!(mine.windows(2).all(|p| p[0] < p[1]), "reordered");
            }
            all.extend(got);
        }
        all.sort_unstable();
        all.dedup();
        all.len() as u64
    });
    assert_eq!(total, 2 * PER, "lost or duplicated messages");
}

#[test]
fn timeouts_come_from_the_runtime() {
    current_thread().block_on(async {
        let (_tx, rx) = mpmc::channel(&mpmc::Config::default()).unwrap();
        let mut rx = AsyncReceiver::new(rx).unwrap();
        let r = tokio::time::timeout(Duration::from_millis(30), rx.recv()).await;
        assert!(r.is_err());
    });
}

#[test]
fn tokio_io_copy_moves_a_byte_stream_between_a_ring_and_tcp() {
    current_thread().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        // TCP -> ring: the server copies what it reads into a ring.
        let (_name, tx, rx) = named_pair("async-copy", 1 << 14);
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut tx = tx;
            tokio::io::copy(&mut sock, &mut tx).await.unwrap()
        });
        let client = tokio::spawn(async move {
            let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            sock.write_all(&data).await.unwrap();
            sock.shutdown().await.unwrap();
        });
        // Ring -> TCP: read the ring as a byte stream and copy it into a second connection.
        let listener2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr2 = listener2.local_addr().unwrap();
        let sink = tokio::spawn(async move {
            let (mut sock, _) = listener2.accept().await.unwrap();
            let mut all = Vec::new();
            sock.read_to_end(&mut all).await.unwrap();
            all
        });
        let mut out = tokio::net::TcpStream::connect(addr2).await.unwrap();
        let mut reader = AsyncByteReader::new(rx);
        let copied = tokio::io::copy(&mut reader, &mut out).await.unwrap();
        out.shutdown().await.unwrap();
        drop(out);
        client.await.unwrap();
        assert_eq!(server.await.unwrap(), expect.len() as u64);
        assert_eq!(copied, expect.len() as u64);
        assert_eq!(sink.await.unwrap(), expect);
    });
}

#[test]
fn std_io_write_and_read_cut_a_byte_stream_into_records() {
    use std::io::{Read, Write};
    let name = RingName::new("io-std");
    let config = spsc::Config::default().capacity_bytes(4096);
    let mut tx = spsc::Producer::create(name.as_str(), config).unwrap();
    let rx = spsc::Consumer::open(name.as_str()).unwrap();
    let max = tx.max_message();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let expect = data.clone();
    let writer = std::thread::spawn(move || {
        // One write sends at most one message.
        assert_eq!(tx.write(&data).unwrap(), max);
        tx.write_all(&data[max..]).unwrap();
        tx.write_all(&[]).unwrap();
    });
    let mut reader = shmring::io::ByteReader::new(rx);
    let mut got = Vec::new();
    let mut small = [0u8; 7];
    // Reads smaller than a message take it in pieces.
    let n = reader.read(&mut small).unwrap();
    got.extend_from_slice(&small[..n]);
    reader.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(got, expect);
    // A reader of a ring whose consumer is gone: BrokenPipe on write.
    let (mut tx, rx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    drop(rx);
    let e = tx.write(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn the_raw_readiness_fd_wakes_a_poll_loop_from_another_thread() {
    let name = RingName::new("readiness");
    let mut tx = spsc::Producer::create(name.as_str(), spsc::Config::default()).unwrap();
    let mut rx = spsc::Consumer::open(name.as_str()).unwrap();
    let mut ready = rx.readiness().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(b"ring").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        drop(tx);
    });
    let mut waits = 0;
    let mut got = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(m) => {
                ready.disarm();
                got.push(m.to_vec());
            }
            Err(shmring::TryRecvError::Empty) => {
                if ready.arm() {
                    continue;
                }
                waits += 1;
                ready.wait(Some(Duration::from_secs(10)));
                ready.clear();
            }
            Err(shmring::TryRecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    t.join().unwrap();
    assert_eq!(got, [b"ring".to_vec()]);
    // One wait for the message and one for the close (a spurious wake-up adds one).
    assert!((2..=6).contains(&waits), "{waits} waits");
}
