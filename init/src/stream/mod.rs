//! The streamed root (`modloop_stream=yes`): boot from the image while it is still arriving.
// The block server that reads the manifest lands with the next commits.
#[allow(dead_code)]
pub mod manifest;
