//! The ciphers and MACs the vendors' HTTPDNS SDKs use, from RustCrypto crates: AES-CBC with PKCS#7
//! padding and AES-GCM (Alibaba `/v2/d`, Tencent `alg=aes`), DES-ECB with PKCS#5 padding (Tencent
//! `alg=des`, legacy), HMAC-SHA256 (Alibaba's v2 signature). Keys of 16, 24 or 32 octets select
//! AES-128/192/256. Every function returns None on a wrong key length, a bad padding or a failed
//! authentication tag; callers turn that into their API's error.

use aes::{Aes128, Aes192, Aes256};
use aes_gcm::aead::{Aead, KeyInit};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::Mac;

/// AES-CBC IV length (the block size).
pub const CBC_IV: usize = 16;
/// AES-GCM nonce length the SDKs use (NIST SP 800-38D's recommended 96 bits); the 16-octet tag
/// follows the ciphertext, as Java's `AES/GCM/NoPadding` writes it.
pub const GCM_IV: usize = 12;

/// `iv || AES-CBC(key, iv, PKCS#7(plain))`.
pub fn aes_cbc_encrypt(key: &[u8], iv: &[u8; CBC_IV], plain: &[u8]) -> Option<Vec<u8>> {
    fn run<C>(key: &[u8], iv: &[u8; CBC_IV], plain: &[u8]) -> Option<Vec<u8>>
    where
        cbc::Encryptor<C>: KeyIvInit + BlockEncryptMut,
        C: cbc::cipher::BlockEncryptMut + cbc::cipher::BlockCipher,
    {
        let enc = cbc::Encryptor::<C>::new_from_slices(key, iv).ok()?;
        let mut out = iv.to_vec();
        out.extend(enc.encrypt_padded_vec_mut::<Pkcs7>(plain));
        Some(out)
    }
    match key.len() {
        16 => run::<Aes128>(key, iv, plain),
        24 => run::<Aes192>(key, iv, plain),
        32 => run::<Aes256>(key, iv, plain),
        _ => None,
    }
}

/// The inverse of `aes_cbc_encrypt`: `data` = IV then ciphertext.
pub fn aes_cbc_decrypt(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    fn run<C>(key: &[u8], data: &[u8]) -> Option<Vec<u8>>
    where
        cbc::Decryptor<C>: KeyIvInit + BlockDecryptMut,
        C: cbc::cipher::BlockDecryptMut + cbc::cipher::BlockCipher,
    {
        if data.len() < CBC_IV {
            return None;
        }
        let (iv, body) = data.split_at(CBC_IV);
        let dec = cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?;
        dec.decrypt_padded_vec_mut::<Pkcs7>(body).ok()
    }
    match key.len() {
        16 => run::<Aes128>(key, data),
        24 => run::<Aes192>(key, data),
        32 => run::<Aes256>(key, data),
        _ => None,
    }
}

/// `iv || AES-GCM(key, iv, plain) || tag` (no associated data).
pub fn aes_gcm_encrypt(key: &[u8], iv: &[u8; GCM_IV], plain: &[u8]) -> Option<Vec<u8>> {
    let nonce = aes_gcm::Nonce::from_slice(iv);
    let sealed = match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .encrypt(nonce, plain),
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .encrypt(nonce, plain),
        _ => return None,
    }
    .ok()?;
    let mut out = iv.to_vec();
    out.extend(sealed);
    Some(out)
}

/// The inverse of `aes_gcm_encrypt`; None when the tag does not verify.
pub fn aes_gcm_decrypt(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < GCM_IV + 16 {
        return None;
    }
    let (iv, body) = data.split_at(GCM_IV);
    let nonce = aes_gcm::Nonce::from_slice(iv);
    match key.len() {
        16 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, body),
        32 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, body),
        _ => return None,
    }
    .ok()
}

/// DES-ECB with PKCS#5 padding (8-octet key): Tencent's legacy `alg=des`. ECB leaks repeated
/// blocks; it is here only for SDKs that speak nothing else, and only for accounts that enable it.
pub fn des_ecb_encrypt(key: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let enc = ecb::Encryptor::<des::Des>::new_from_slice(key).ok()?;
    Some(enc.encrypt_padded_vec_mut::<Pkcs7>(plain))
}

pub fn des_ecb_decrypt(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let dec = ecb::Decryptor::<des::Des>::new_from_slice(key).ok()?;
    dec.decrypt_padded_vec_mut::<Pkcs7>(data).ok()
}

/// Lowercase hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(msg);
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// Compares two strings in time independent of where they differ (signatures).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let k16 = [7u8; 16];
        let iv = [1u8; 16];
        let c = aes_cbc_encrypt(&k16, &iv, b"hello").unwrap();
        assert_eq!(c.len(), 32);
        assert_eq!(aes_cbc_decrypt(&k16, &c).unwrap(), b"hello");
        let g = aes_gcm_encrypt(&k16, &[2u8; 12], b"hello").unwrap();
        assert_eq!(g.len(), 12 + 5 + 16);
        assert_eq!(aes_gcm_decrypt(&k16, &g).unwrap(), b"hello");
        let mut bad = g.clone();
        bad[13] ^= 1;
        assert_eq!(aes_gcm_decrypt(&k16, &bad), None);
        let d = des_ecb_encrypt(b"12345678", b"www.qq.com").unwrap();
        assert_eq!(d.len(), 16);
        assert_eq!(des_ecb_decrypt(b"12345678", &d).unwrap(), b"www.qq.com");
        assert_eq!(aes_cbc_encrypt(&[0; 15], &iv, b"x"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
