//! The lock-free sample rings between the sound card callbacks and the link thread.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// A bounded single-producer single-consumer ring of `f32` samples.
///
/// One thread calls [`push`](Self::push) (the producer) and one other thread calls
/// [`pop_into`](Self::pop_into) / [`skip`](Self::skip) (the consumer); [`len`](Self::len) is
/// safe from anywhere. Samples are stored as their bits in atomics, so the ring needs no
/// unsafe code and never blocks; misuse (two producers) garbles samples but is not undefined.
#[derive(Debug)]
pub struct SampleRing {
    slots: Box<[AtomicU32]>,
    /// Samples ever written (the producer's cursor).
    head: AtomicUsize,
    /// Samples ever read (the consumer's cursor).
    tail: AtomicUsize,
}

impl SampleRing {
    /// A ring holding up to `capacity` samples (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let slots = (0..capacity.max(1)).map(|_| AtomicU32::new(0)).collect();
        Self {
            slots,
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }

    /// Most samples the ring holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Samples waiting to be read.
    #[must_use]
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        head.wrapping_sub(tail).min(self.capacity())
    }

    /// Whether nothing waits to be read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Producer: appends as many of `samples` as fit; returns how many (the rest is dropped).
    pub fn push(&self, samples: &[f32]) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let free = self.capacity() - head.wrapping_sub(tail).min(self.capacity());
        let n = samples.len().min(free);
        let cap = self.capacity();
        for (k, sample) in samples[..n].iter().enumerate() {
            self.slots[head.wrapping_add(k) % cap].store(sample.to_bits(), Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Producer: appends `n` zero samples as far as they fit; returns how many.
    pub fn push_silence(&self, n: usize) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        let cap = self.capacity();
        let n = n.min(cap - head.wrapping_sub(tail).min(cap));
        for k in 0..n {
            self.slots[head.wrapping_add(k) % cap].store(0, Ordering::Relaxed);
        }
        self.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer: moves up to `out.len()` samples into `out`; returns how many.
    pub fn pop_into(&self, out: &mut [f32]) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let cap = self.capacity();
        let n = out.len().min(head.wrapping_sub(tail).min(cap));
        for (k, sample) in out[..n].iter_mut().enumerate() {
            *sample =
                f32::from_bits(self.slots[tail.wrapping_add(k) % cap].load(Ordering::Relaxed));
        }
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer: discards up to `n` samples; returns how many.
    pub fn skip(&self, n: usize) -> usize {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        let n = n.min(head.wrapping_sub(tail).min(self.capacity()));
        self.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_moves_samples_in_order_and_drops_what_does_not_fit() {
        let ring = SampleRing::new(8);
        assert!(ring.is_empty());
        assert_eq!(ring.push(&[1.0, 2.0, 3.0, 4.0, 5.0]), 5);
        let mut out = [0.0; 3];
        assert_eq!(ring.pop_into(&mut out), 3);
        assert_eq!(out, [1.0, 2.0, 3.0]);
        // Wraps around the end of the slots.
        assert_eq!(ring.push(&[6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]), 6);
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.push(&[13.0]), 0);
        assert_eq!(ring.skip(2), 2);
        let mut out = [0.0; 10];
        assert_eq!(ring.pop_into(&mut out), 6);
        assert_eq!(out[..6], [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
        assert_eq!(ring.push_silence(3), 3);
        assert_eq!(ring.pop_into(&mut out), 3);
        assert_eq!(out[..3], [0.0; 3]);
    }

    #[test]
    fn ring_between_two_threads_loses_nothing() {
        let ring = std::sync::Arc::new(SampleRing::new(64));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut next = 0_u32;
                while next < 10_000 {
                    let block: Vec<f32> = (next..next + 7).map(|v| v as f32).collect();
                    next += ring.push(&block) as u32;
                }
            })
        };
        let mut seen = 0_u32;
        let mut out = [0.0; 5];
        while seen < 10_000 {
            let n = ring.pop_into(&mut out);
            for sample in &out[..n] {
                assert_eq!(*sample, seen as f32);
                seen += 1;
            }
        }
        assert!(producer.join().is_ok());
    }
}
