//! A CPU-bound guest that never ends on its own: the server must stop it
//! with epoch interruption (terminate, interrupt or the time limit).
fn main() {
    println!("spinning");
    let mut x: u64 = 1;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if x == 42 {
            println!("unlikely");
        }
    }
}
