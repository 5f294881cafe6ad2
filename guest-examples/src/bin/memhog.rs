//! Allocates memory in 1 MiB steps (touching every page) until the first
//! argument in MiB is reached (default: forever). Used to test the memory cap.
fn main() {
    let limit: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(usize::MAX);
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    while blocks.len() < limit {
        blocks.push(vec![1u8; 1024 * 1024]);
    }
    println!("allocated {} MiB", blocks.len());
}
