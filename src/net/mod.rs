//! The tokio driver: sockets, interfaces and timers around the sans-IO [`crate::ice::Agent`].
