//! For the loom models of `loom-tests` only: an in-process MPMC ring that has an endpoint
//! registry and a claim table, as a shared ring has, so that the registry and crash-recovery
//! code (attach, the side close of the last endpoint, reaping, finishing abandoned slots)
//! runs against loom's atomics. Not part of the API: it may change or go at any time.
//!
//! Its registry (`shm::ModelRegistry`) runs the registry protocol of shared rings on the
//! same entries, with the OFD lock that tells a live endpoint from a dead one replaced by a word
//! that a model thread can let go of to play the death of a process ([`Peers::kill_sender`],
//! [`Peers::kill_receiver`]). Its handles are the ring's own [`Sender`] and [`Receiver`],
//! taking the code paths of a shared ring's handles.

use super::handle::{Handle, attach};
use super::ring::{Ring, Role, on_heap_registered};
use super::{Config, Receiver, Sender};
use crate::error::OpenError;
use crate::shm::ModelRegistry;
use crate::storage::Registry;

/// Creates an in-process MPMC ring whose endpoint registry has `entries` entries (replacing
/// [`Config::endpoints`]), with one sender and one receiver attached (entries 0 and 1), and
/// the [`Peers`] with which a model opens more endpoints and kills them. For the loom models
/// only (see the module docs); use [`channel`](super::channel) otherwise.
///
/// # Errors
/// [`OpenError::InvalidConfig`] for a configuration that describes no valid ring (a registry
/// of fewer than 2 entries included).
///
/// ```
/// use shmring::mpmc::{self, __model::channel_with_registry};
/// let config = mpmc::Config::default().slots(2).max_message_bytes(48);
/// let (mut tx, mut rx, peers) = channel_with_registry(&config, 3)?;
/// let mut tx2 = peers.open_sender()?;
/// let grant = tx2.reserve(8)?;
/// // The process of `tx2` is killed between its claim and its publish.
/// std::mem::forget(grant);
/// peers.kill_sender(tx2);
/// tx.send(b"after")?;
/// drop(tx);
/// // The receiver finds the claimer dead, skips its slot, and reads on.
/// assert_eq!(&*rx.recv()?, b"after");
/// assert_eq!(rx.recv().unwrap_err(), shmring::RecvError::Disconnected);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel_with_registry(
    config: &Config,
    entries: usize,
) -> Result<(Sender, Receiver, Peers), OpenError> {
    let config = config.endpoints(entries);
    let (ring, registry) = on_heap_registered(&config)?;
    let peers = Peers {
        ring,
        registry,
        config,
    };
    Ok((peers.open_sender()?, peers.open_receiver()?, peers))
}

/// What a model does to a ring with a registry from outside its handles: open endpoints as
/// another process would ([`Sender::open`]), and kill them as `SIGKILL` would. Clones act on
/// the same ring.
#[derive(Clone, Debug)]
pub struct Peers {
    ring: Ring,
    registry: ModelRegistry,
    config: Config,
}

// SAFETY: `ring` refers to heap memory kept alive by its storage (an `Arc`) and is only used
// to attach new handles, which touches nothing but atomics; the registry is atomics in an
// `Arc`.
unsafe impl Send for Peers {}
// SAFETY: as above: every method takes `&self` and only attaches (atomics) or kills (one
// atomic store), which any number of threads may do at once.
unsafe impl Sync for Peers {}

impl Peers {
    /// Attaches a new sender, as [`Sender::open`] does for a shared ring: it takes a free
    /// registry entry and counts itself in the senders' side unless that side is closed.
    ///
    /// # Errors
    /// [`OpenError::EndpointClosed`] once every sender that was attached is gone,
    /// [`OpenError::RegistryFull`] when every entry is in use.
    pub fn open_sender(&self) -> Result<Sender, OpenError> {
        Ok(Sender {
            h: self.open(Role::Sender)?,
        })
    }

    /// Attaches a new receiver (see [`Peers::open_sender`]).
    ///
    /// # Errors
    /// As [`Peers::open_sender`].
    pub fn open_receiver(&self) -> Result<Receiver, OpenError> {
        Ok(Receiver {
            h: self.open(Role::Receiver)?,
        })
    }

    fn open(&self, role: Role) -> Result<Handle, OpenError> {
        attach(self.ring.clone(), role, self.config.wait_strategy)
    }

    /// The process of `tx` is killed: its registry entry's lock is let go of, as the kernel
    /// does for a dead process, and `tx` is forgotten, never dropped (a killed process runs
    /// no destructor, so it neither closes its entry nor publishes or abandons what it
    /// claimed). Forget its grant, if it holds one, before calling this.
    ///
    /// # Panics
    /// If `tx` is not an endpoint of this ring.
    pub fn kill_sender(&self, tx: Sender) {
        self.kill(&tx.h);
        std::mem::forget(tx);
    }

    /// The process of `rx` is killed (see [`Peers::kill_sender`]); forget its message guard,
    /// if it holds one, before calling this.
    ///
    /// # Panics
    /// If `rx` is not an endpoint of this ring.
    pub fn kill_receiver(&self, rx: Receiver) {
        self.kill(&rx.h);
        std::mem::forget(rx);
    }

    /// What a scan of the registry sees now, entry by entry, as the ring's own scans do
    /// (closing a side, looking for the other side's live endpoints): the role of each entry
    /// that is attached (`"sender"`, `"receiver"`, or `"unknown"` for a code that is
    /// neither), `None` for one that is not.
    pub fn attached_roles(&self) -> Vec<Option<&'static str>> {
        (0..self.ring.registry_len)
            .map(|i| {
                self.registry
                    .attached_role(i)
                    .map(|code| match Role::from_code(code) {
                        Some(Role::Sender) => "sender",
                        Some(Role::Receiver) => "receiver",
                        None => "unknown",
                    })
            })
            .collect()
    }

    fn kill(&self, h: &Handle) {
        assert!(h.ring.ctrl == self.ring.ctrl, "an endpoint of another ring");
        let entry = h.entry.expect("an endpoint of a ring with a registry");
        self.registry.kill(entry);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{RecvError, TryRecvError, TrySendError};

    fn config() -> Config {
        Config::default().slots(2).max_message_bytes(48)
    }

    #[test]
    fn a_receiver_killed_holding_a_message_gives_its_slot_back() {
        let (mut tx, mut rx, peers) = channel_with_registry(&config(), 3).unwrap();
        let mut rx2 = peers.open_receiver().unwrap();
        tx.send(b"lost").unwrap();
        tx.send(b"second").unwrap();
        let m = rx2.recv().unwrap();
        std::mem::forget(m);
        peers.kill_receiver(rx2);
        // The ring is full; the peer check that `try_send` then runs (the first one is due)
        // takes the slot of "lost" back, and the next `try_send` gets it.
        assert!(matches!(tx.try_send(b"third"), Err(TrySendError::Full(()))));
        tx.try_send(b"third").unwrap();
        drop(tx);
        assert_eq!(&*rx.recv().unwrap(), b"second");
        assert_eq!(&*rx.recv().unwrap(), b"third");
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
    }

    #[test]
    fn a_closed_side_refuses_new_endpoints_and_a_full_registry_refuses_all() {
        let (tx, mut rx, peers) = channel_with_registry(&config(), 3).unwrap();
        let tx2 = peers.open_sender().unwrap();
        assert!(matches!(
            peers.open_receiver(),
            Err(OpenError::RegistryFull { capacity: 3 })
        ));
        drop(tx);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        drop(tx2);
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
        assert!(matches!(
            peers.open_sender(),
            Err(OpenError::EndpointClosed("senders"))
        ));
        // Closed entries are reused by the side that is still open.
        let mut rx2 = peers.open_receiver().unwrap();
        assert_eq!(rx2.try_recv().unwrap_err(), TryRecvError::Disconnected);
    }

    #[test]
    fn a_live_claim_is_never_recovered() {
        let (tx, mut rx, peers) = channel_with_registry(&config(), 3).unwrap();
        let mut tx2 = peers.open_sender().unwrap();
        let mut g = tx2.reserve(4).unwrap();
        // The receiver's peer check runs on every empty `try_recv`: the claimer is alive.
        assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
        g[..4].copy_from_slice(b"slow");
        g.commit(4).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), b"slow");
        drop((tx, tx2));
        assert_eq!(rx.recv().unwrap_err(), RecvError::Disconnected);
    }

    #[test]
    #[should_panic(expected = "another ring")]
    fn killing_an_endpoint_of_another_ring_panics() {
        let (_tx, _rx, peers) = channel_with_registry(&config(), 3).unwrap();
        let (other, _orx) = crate::mpmc::channel(&config()).unwrap();
        peers.kill_sender(other);
    }

    #[test]
    fn full_ring_with_live_receivers_stays_full() {
        let (mut tx, mut rx, _peers) = channel_with_registry(&config(), 3).unwrap();
        tx.send(b"a").unwrap();
        tx.send(b"b").unwrap();
        let m = rx.try_recv().unwrap();
        assert!(matches!(tx.try_send(b"c"), Err(TrySendError::Full(()))));
        drop(m);
        tx.try_send(b"c").unwrap();
    }
}
