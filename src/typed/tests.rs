use super::{ReserveError, TypedError};
use crate::{mpmc, spsc};

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Order {
    id: u64,
    qty: u32,
    side: u8,
    _pad: [u8; 3],
    price: f64,
}

fn order(i: u64) -> Order {
    Order {
        id: i,
        qty: i as u32 * 3,
        side: (i % 2) as u8,
        _pad: [0; 3],
        price: i as f64 / 4.0,
    }
}

/// A value aligned to 16 bytes, more than an SPSC payload promises.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(16))]
struct Wide([u64; 2]);

#[test]
fn values_round_trip_by_copy_and_in_place_on_both_kinds() {
    let (mut tx, mut rx) = spsc::channel(&spsc::Config::default()).unwrap();
    let (mut mtx, mut mrx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    for i in 0..100 {
        tx.send_value(&order(i)).unwrap();
        mtx.send_value(&order(i)).unwrap();
        let msg = rx.recv().unwrap();
        assert_eq!(msg.as_value::<Order>().unwrap(), &order(i));
        assert_eq!(msg.read_value::<Order>().unwrap(), order(i));
        drop(msg);
        let msg = mrx.recv().unwrap();
        assert_eq!(msg.as_value::<Order>().unwrap(), &order(i));
        assert_eq!(msg.read_value::<Order>().unwrap(), order(i));
    }
}

#[test]
fn reserved_values_are_zeroed_whatever_the_ring_held_before() {
    let (mut tx, mut rx) = spsc::channel(&spsc::Config::default().capacity_bytes(4096)).unwrap();
    // Fill the ring with 0xff bytes and drain it, so the next grants land on old bytes.
    for _ in 0..200 {
        tx.send(&[0xff; 24]).unwrap();
        drop(rx.recv().unwrap());
    }
    for i in 0..200 {
        let mut g = tx.reserve_value::<Order>().unwrap();
        assert_eq!(*g, bytemuck::Zeroable::zeroed(), "grant {i}");
        g.id = i;
        g.commit().unwrap();
        assert_eq!(rx.recv().unwrap().as_value::<Order>().unwrap().id, i);
    }
    let (mut mtx, mut mrx) = mpmc::channel(&mpmc::Config::default().slots(4)).unwrap();
    for i in 0..20 {
        mtx.send(&[0xff; 64]).unwrap();
        drop(mrx.recv().unwrap());
        let mut g = mtx.reserve_values::<u32>(16).unwrap();
        assert!(g.iter().all(|&v| v == 0), "grant {i}");
        g[15] = 1;
        g.commit(16).unwrap();
        let msg = mrx.recv().unwrap();
        assert_eq!(msg.as_values::<u32>().unwrap()[15], 1);
        assert_eq!(msg.as_values::<u32>().unwrap().iter().sum::<u32>(), 1);
    }
}

#[test]
fn sizes_are_checked_for_values_and_slices() {
    let (mut tx, mut rx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    tx.send(&[1, 2, 3, 4, 5, 6]).unwrap();
    let msg = rx.recv().unwrap();
    let size = |len, size, slice| Err::<(), _>(TypedError::Size { len, size, slice });
    assert_eq!(msg.as_value::<u32>().map(drop), size(6, 4, false));
    assert_eq!(msg.read_value::<u64>().map(drop), size(6, 8, false));
    assert_eq!(msg.as_values::<u32>().map(drop), size(6, 4, true));
    assert_eq!(msg.read_values::<u32>().map(drop), size(6, 4, true));
    assert_eq!(msg.as_values::<u16>().unwrap(), &[0x0201, 0x0403, 0x0605]);
    assert_eq!(msg.as_values::<()>().map(drop), size(6, 0, true));
    assert_eq!(msg.as_value::<()>().map(drop), size(6, 0, false));
    drop(msg);
    tx.send(&[]).unwrap();
    let empty = rx.recv().unwrap();
    assert_eq!(empty.as_values::<u64>().unwrap(), &[] as &[u64]);
    assert_eq!(empty.read_values::<u64>().unwrap(), Vec::<u64>::new());
}

#[test]
fn an_spsc_payload_that_is_not_aligned_for_the_type_is_refused_in_place() {
    let (mut tx, mut rx) = spsc::channel(&spsc::Config::default().capacity_bytes(4096)).unwrap();
    // The first payload follows an 8-byte record header at the (128-byte aligned) region's
    // start: 8 mod 16.
    let addr = {
        let g = tx.reserve(16).unwrap();
        g.as_ptr() as usize
    };
    assert_eq!(addr % 16, 8, "the record format changed: adapt this test");
    match tx.reserve_value::<Wide>() {
        Err(ReserveError::Typed(TypedError::Alignment { addr: a, align: 16 })) => {
            assert_eq!(a, addr)
        }
        other => panic!("{other:?}"),
    }
    assert!(rx.try_recv().is_err(), "a refused grant publishes nothing");
    // By copy it goes through; in place it is refused, a copy out works.
    tx.send_value(&Wide([1, 2])).unwrap();
    {
        let msg = rx.recv().unwrap();
        assert!(matches!(
            msg.as_value::<Wide>(),
            Err(TypedError::Alignment { align: 16, .. })
        ));
        assert_eq!(msg.read_value::<Wide>().unwrap(), Wide([1, 2]));
    }
    // A 16-byte payload (a 24-byte record) moves the next payload to 16-byte alignment.
    let mut g = tx.reserve_value::<Wide>().unwrap();
    g.0 = [3, 4];
    g.commit().unwrap();
    assert_eq!(
        rx.recv().unwrap().as_value::<Wide>().unwrap(),
        &Wide([3, 4])
    );
}

#[test]
fn an_mpmc_payload_is_aligned_for_16_byte_types() {
    let (mut tx, mut rx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    for i in 0..10 {
        let mut g = tx.reserve_value::<Wide>().unwrap();
        g.0 = [i, i + 1];
        g.commit().unwrap();
        assert_eq!(
            rx.recv().unwrap().as_value::<Wide>().unwrap(),
            &Wide([i, i + 1])
        );
    }
}

#[test]
fn typed_grants_commit_what_they_say_and_drop_publishes_nothing() {
    let (mut tx, mut rx) = spsc::channel(&spsc::Config::default()).unwrap();
    let mut g = tx.reserve_values::<u16>(10).unwrap();
    assert_eq!(g.len(), 10);
    g[..3].copy_from_slice(&[7, 8, 9]);
    assert_eq!(
        tx_commit_too_many(g),
        Err(crate::CommitError::TooLong {
            len: 22,
            granted: 20
        })
    );
    assert!(rx.try_recv().is_err());
    let mut g = tx.reserve_values::<u16>(10).unwrap();
    g[..3].copy_from_slice(&[7, 8, 9]);
    g.commit(3).unwrap();
    assert_eq!(rx.recv().unwrap().as_values::<u16>().unwrap(), &[7, 8, 9]);
    drop(tx.reserve_value::<u64>().unwrap());
    assert!(rx.try_recv().is_err());
    // Too large for the ring: the byte-level error.
    let max = tx.max_message();
    assert!(matches!(
        tx.reserve_values::<u8>(max + 1),
        Err(ReserveError::Send(crate::SendError::TooLarge { .. }))
    ));
    assert!(matches!(
        tx.reserve_values::<u64>(usize::MAX),
        Err(ReserveError::Send(crate::SendError::TooLarge { .. }))
    ));
}

fn tx_commit_too_many(
    g: super::ValuesGrant<spsc::Grant<'_>, u16>,
) -> Result<(), crate::CommitError> {
    g.commit(11)
}

#[test]
fn typed_errors_convert_with_question_mark() {
    fn io() -> std::io::Result<()> {
        let (mut tx, mut rx) =
            spsc::channel(&spsc::Config::default()).map_err(std::io::Error::other)?;
        tx.send(b"xyz")?;
        rx.recv()
            .map_err(std::io::Error::other)?
            .read_value::<u32>()?;
        Ok(())
    }
    assert_eq!(io().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    let (tx, _rx) = mpmc::channel(&mpmc::Config::default()).unwrap();
    let mut tx2 = tx.try_clone().unwrap();
    drop(_rx);
    let e: std::io::Error = tx2.reserve_value::<u64>().unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        tx2.try_reserve_value::<u64>().unwrap_err().into();
    assert!(boxed.to_string().contains("gone"), "{boxed}");
}
