//! gitmouth on async-std (built out in its own issue).
