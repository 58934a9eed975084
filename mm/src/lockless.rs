//! Step-wise lockless walker (being built).
