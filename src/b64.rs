//! Base64 on the bulk-data paths (`process/output`, `fs/readFile`,
//! `fs/writeFile`, `process/write`): SIMD-accelerated by `base64-simd`, with
//! the `base64` crate's error messages when the input is invalid.

use base64::Engine as _;

/// Appends the standard base64 of `data` to `out`.
pub fn encode_into(data: &[u8], out: &mut String) {
    base64_simd::STANDARD.encode_append(data, out);
}

/// The standard base64 of `data`.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    encode_into(data, &mut out);
    out
}

/// Decodes standard base64 (padded).
pub fn decode(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    match base64_simd::STANDARD.decode_to_vec(text) {
        Ok(v) => Ok(v),
        // Invalid: let the scalar decoder say exactly why.
        Err(_) => base64::engine::general_purpose::STANDARD.decode(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_base64_crate() {
        let b = base64::engine::general_purpose::STANDARD;
        for len in 0..200usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let text = encode(&data);
            assert_eq!(text, b.encode(&data));
            assert_eq!(decode(text.as_bytes()).expect("decodes"), data);
        }
        for bad in ["a", "ab=c", "!!!!", "YQ", "YQ==="] {
            assert_eq!(decode(bad.as_bytes()).is_err(), b.decode(bad).is_err(), "{bad}");
        }
    }
}
