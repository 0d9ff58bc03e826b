//! The read store on real Elasticsearch-API servers, in one test binary:
//! the port's contract, and the projection rebuild.

mod contract;
mod rebuild;
