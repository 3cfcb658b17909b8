//! Deterministic post content of realistic size.

/// Words the generator draws from.
const WORDS: &[&str] = &[
    "read", "heavy", "cache", "memory", "redis", "writer", "reader", "version", "latency", "core",
    "socket", "ring", "feed", "post", "update", "stream", "epoch", "thread", "fast", "steady",
];

/// A small deterministic generator (xorshift64*), so runs are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The JSON of post number `n`: `{id, title, content, author}`, about
/// `mean_len` bytes (±30%), the same bytes for the same arguments.
pub fn post_json(id: &str, n: u64, mean_len: usize) -> Vec<u8> {
    let mut rng = Rng::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef);
    let spread = (mean_len * 3 / 10).max(1) as u64;
    let target =
        mean_len.saturating_sub(spread as usize) + (rng.next_u64() % (2 * spread)) as usize;
    let title_words = 3 + (rng.next_u64() % 5) as usize;
    let mut title = String::new();
    for i in 0..title_words {
        if i > 0 {
            title.push(' ');
        }
        title.push_str(WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]);
    }
    let author = format!("author-{}", rng.next_u64() % 10_000);
    let fixed = r#"{"id":"","title":"","content":"","author":""}"#.len()
        + id.len()
        + title.len()
        + author.len();
    let mut content = String::new();
    while content.len() + fixed < target {
        if !content.is_empty() {
            content.push(' ');
        }
        content.push_str(WORDS[(rng.next_u64() % WORDS.len() as u64) as usize]);
    }
    format!(r#"{{"id":"{id}","title":"{title}","content":"{content}","author":"{author}"}}"#)
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_deterministic_and_near_the_mean_size() {
        assert_eq!(post_json("a", 7, 350), post_json("a", 7, 350));
        assert_ne!(post_json("a", 7, 350), post_json("a", 8, 350));
        let total: usize = (0..1000)
            .map(|n| post_json(&format!("post-{n}"), n, 350).len())
            .sum();
        let mean = total / 1000;
        assert!((300..400).contains(&mean), "mean {mean}");
    }
}
