//! The core's deadline table (it needs a clock to test, so it is tested
//! here rather than in the core).

use std::time::{Duration, Instant};

use gitmouth_core::timer::{TimerKind, Timers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    A,
    B,
    C,
}

impl TimerKind for Kind {
    const COUNT: usize = 3;
    const ALL: &'static [Self] = &[Kind::A, Kind::B, Kind::C];
    fn index(self) -> usize {
        self as usize
    }
}

#[test]
fn next_is_the_earliest_and_due_kinds_fire_once_in_order() {
    let t0 = Instant::now();
    let mut t: Timers<Kind, 3> = Timers::default();
    assert_eq!(t.next(), None);
    t.set(Kind::C, t0 + Duration::from_secs(1));
    t.set(Kind::A, t0 + Duration::from_secs(2));
    t.set(Kind::B, t0 + Duration::from_secs(5));
    assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
    let due: Vec<_> = t.take_due(t0 + Duration::from_secs(2)).collect();
    assert_eq!(due, [Kind::A, Kind::C]);
    assert!(t.take_due(t0 + Duration::from_secs(2)).next().is_none());
    assert_eq!(t.next(), Some(t0 + Duration::from_secs(5)));
    assert!(!t.expire(Kind::B, t0 + Duration::from_secs(4)));
    assert!(t.expire(Kind::B, t0 + Duration::from_secs(5)));
    assert_eq!(t.next(), None);
}
