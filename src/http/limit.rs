//! Rate limits (being written).
#[derive(Default)]
pub struct Limiter;
