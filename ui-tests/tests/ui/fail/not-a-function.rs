#[ruecache::cached_batch(key = "w:{id}")]
struct Service;

fn main() {}
