//! Projection rebuild (filled in below).
