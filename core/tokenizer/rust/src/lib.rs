//! C interface to the Hugging Face `tokenizers` crate, for core/tokenizer/tokenizer.cpp.
//!
//! Every entry point catches panics: unwinding into C++ is undefined behaviour. Errors come back
//! as heap strings the caller frees with `zk0_tok_free_string`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{PostProcessor, Tokenizer, TruncationDirection};

/// Opaque to C.
pub struct Zk0Tokenizer(Tokenizer);

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_string()
    }
}

/// Stores `msg` in `*error` when the caller asked for it.
unsafe fn set_error(error: *mut *mut c_char, msg: String) {
    if !error.is_null() {
        // Interior NULs would make CString fail; they cannot carry meaning in a message anyway.
        let cleaned = msg.replace('\0', " ");
        *error = CString::new(cleaned)
            .map(CString::into_raw)
            .unwrap_or(ptr::null_mut());
    }
}

/// Loads a tokenizer.json. Returns null on failure and sets `*error` (if non-null).
///
/// `add_prefix_space` 0 or 1 overrides it on a top-level ByteLevel pre-tokenizer, as transformers'
/// PreTrainedTokenizerFast does at load time; -1 keeps tokenizer.json's value.
///
/// # Safety
/// `path` must be a NUL-terminated string; `error` null or writable.
#[no_mangle]
pub unsafe extern "C" fn zk0_tok_from_file(
    path: *const c_char,
    add_prefix_space: c_int,
    error: *mut *mut c_char,
) -> *mut Zk0Tokenizer {
    if !error.is_null() {
        *error = ptr::null_mut();
    }
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<*mut Zk0Tokenizer, String> {
        if path.is_null() {
            return Err("null path".to_string());
        }
        let path = CStr::from_ptr(path)
            .to_str()
            .map_err(|e| format!("path is not UTF-8: {e}"))?;
        let mut tok = Tokenizer::from_file(path).map_err(|e| e.to_string())?;
        // A tokenizer.json may carry its own truncation/padding; callers pass their own per call
        // (as transformers does), so start from none.
        tok.with_truncation(None).map_err(|e| e.to_string())?;
        tok.with_padding(None);
        if add_prefix_space >= 0 {
            if let Some(PreTokenizerWrapper::ByteLevel(bl)) = tok.get_pre_tokenizer() {
                let mut bl = *bl;
                bl.add_prefix_space = add_prefix_space != 0;
                tok.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(bl)));
            }
        }
        Ok(Box::into_raw(Box::new(Zk0Tokenizer(tok))))
    }));
    match result {
        Ok(Ok(handle)) => handle,
        Ok(Err(msg)) => {
            set_error(error, msg);
            ptr::null_mut()
        }
        Err(p) => {
            set_error(error, panic_message(p));
            ptr::null_mut()
        }
    }
}

/// Encodes `len` bytes of UTF-8 at `text` (no NUL needed). With `max_length >= 0` the result is
/// truncated like the Rust tokenizer does under transformers' `truncation=True`: the text's tokens
/// are cut to `max_length` minus the special tokens the post-processor adds (keeping the last ones
/// when `truncate_left`), then the special tokens are added. On success returns 0 and hands over
/// `*n_ids` ids in `*ids`, freed with `zk0_tok_free_ids`; on failure returns -1 and sets `*error`.
///
/// # Safety
/// `tok` from `zk0_tok_from_file`; `text` readable for `len` bytes; `ids`, `n_ids` writable.
#[no_mangle]
pub unsafe extern "C" fn zk0_tok_encode(
    tok: *const Zk0Tokenizer,
    text: *const c_char,
    len: usize,
    add_special_tokens: c_int,
    max_length: i64,
    truncate_left: c_int,
    ids: *mut *mut u32,
    n_ids: *mut usize,
    error: *mut *mut c_char,
) -> c_int {
    if !error.is_null() {
        *error = ptr::null_mut();
    }
    if ids.is_null() || n_ids.is_null() {
        set_error(error, "null output pointer".to_string());
        return -1;
    }
    *ids = ptr::null_mut();
    *n_ids = 0;
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Vec<u32>, String> {
        if tok.is_null() {
            return Err("null tokenizer".to_string());
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(text as *const u8, len)
        };
        let s = std::str::from_utf8(bytes).map_err(|e| format!("text is not UTF-8: {e}"))?;
        let tok = &(*tok).0;
        let add_special = add_special_tokens != 0;
        if max_length < 0 {
            let enc = tok.encode(s, add_special).map_err(|e| e.to_string())?;
            return Ok(enc.get_ids().to_vec());
        }
        // Mirrors TokenizerImpl::post_process: truncate the bare tokens, then add special tokens.
        // Post-processing without special tokens (done by encode) leaves the ids unchanged.
        let mut enc = tok.encode(s, false).map_err(|e| e.to_string())?;
        let added = match tok.get_post_processor() {
            Some(pp) if add_special => pp.added_tokens(false),
            _ => 0,
        };
        let direction = if truncate_left != 0 {
            TruncationDirection::Left
        } else {
            TruncationDirection::Right
        };
        enc.truncate((max_length as usize).saturating_sub(added), 0, direction);
        let enc = tok
            .post_process(enc, None, add_special)
            .map_err(|e| e.to_string())?;
        Ok(enc.get_ids().to_vec())
    }));
    match result {
        Ok(Ok(v)) => {
            let boxed = v.into_boxed_slice();
            *n_ids = boxed.len();
            *ids = Box::into_raw(boxed) as *mut u32;
            0
        }
        Ok(Err(msg)) => {
            set_error(error, msg);
            -1
        }
        Err(p) => {
            set_error(error, panic_message(p));
            -1
        }
    }
}

/// Frees ids from `zk0_tok_encode`; `n_ids` must be the count it returned.
///
/// # Safety
/// `ids` null or from `zk0_tok_encode`, freed once.
#[no_mangle]
pub unsafe extern "C" fn zk0_tok_free_ids(ids: *mut u32, n_ids: usize) {
    if !ids.is_null() {
        drop(Box::from_raw(ptr::slice_from_raw_parts_mut(ids, n_ids)));
    }
}

/// # Safety
/// `s` null or an error string from this library, freed once.
#[no_mangle]
pub unsafe extern "C" fn zk0_tok_free_string(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// # Safety
/// `tok` null or from `zk0_tok_from_file`, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn zk0_tok_destroy(tok: *mut Zk0Tokenizer) {
    if !tok.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(tok))));
    }
}
