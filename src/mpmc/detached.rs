//! Creating a named MPMC ring without attaching to it.

use super::ring::{Role, in_shm};
use crate::config::MpmcConfig as Config;
use crate::error::OpenError;
use crate::geometry::{Geometry, MpmcRules};
use crate::shm;
use crate::sync::Ordering;

/// Creates a named MPMC ring without attaching any endpoint: senders and receivers attach
/// later with [`Sender::open`](super::Sender::open) and
/// [`Receiver::open`](super::Receiver::open), in any order (like `mkfifo`). Until a receiver
/// attaches, senders that fill the ring wait for one; until a sender attaches, receivers wait
/// for messages. Each side closes when the last endpoint that attached to it leaves.
///
/// # Errors
/// As [`Sender::create`](super::Sender::create).
///
/// ```
/// use shmring::mpmc;
/// let name = format!("/shmring-doc-mpmc-mkring-{}", std::process::id());
/// mpmc::create(&name, mpmc::Config::default().slots(8))?;
/// let mut rx = mpmc::Receiver::open(&name)?;
/// let mut tx = mpmc::Sender::open(&name)?;
/// shmring::unlink(&name)?;
/// tx.send(b"hi")?;
/// drop(tx);
/// assert_eq!(&*rx.recv()?, b"hi");
/// assert!(rx.recv().is_err()); // every sender left: end of stream
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn create(name: &str, config: impl std::borrow::Borrow<Config>) -> Result<(), OpenError> {
    let config = config.borrow();
    let (slots, slot_size, max_message, endpoints) = config.mpmc_geometry()?;
    let g = Geometry::new::<MpmcRules>(slots, slot_size, max_message, endpoints)
        .map_err(|c| OpenError::InvalidConfig(c.to_string()))?;
    shm::create::<MpmcRules>(Some(name), &g, config.mode, None, |m| {
        // Nobody else can see the object before it is published. Both side words stay 0:
        // nobody attached yet, neither side closed. Slot i is free for position i.
        let ring = in_shm(m);
        debug_assert_eq!(Role::Sender.side(ring.ctrl()).load(Ordering::Relaxed), 0);
        for i in 0..slots {
            ring.meta(i).seq.store(i, Ordering::Relaxed);
        }
    })?;
    Ok(())
}
