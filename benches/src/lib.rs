//! Benchmarks live in `benches/`; see `compare.sh` for the side-by-side with tshark.
