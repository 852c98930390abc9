;; ETF helpers for WAT guests of node_server::wasm: read and write the few term shapes a small
;; actor needs without hand-writing bytes.
;;
;; This file holds module fields, not a module: `cargo run --example build_guest -- G.wat`
;; puts it where G.wat has the line `;; @include etf.wat` (after the imports) and writes G.wasm.
;; It needs the guest's memory and defines three globals of its own.
;;
;; Reading (a cursor over one ETF term; every read checks the bytes left):
;;   $etf_begin(ptr, len) -> 1 if the bytes start with the version byte 131 (cursor after it)
;;   $etf_tuple() -> arity of the tuple at the cursor (cursor inside it), or -1
;;   $etf_atom_is(str, len) -> 1 if the term at the cursor is that atom (cursor past it), else 0
;;                             (cursor past the atom when it is another atom, unchanged otherwise)
;;   $etf_int() -> i64 at the cursor (small, 32-bit or up to 8-byte big); $etf_ok is 0 when the
;;                 term is no integer or does not fit an i64
;;   $etf_list_first_int() -> the first element of a proper list of integers (the spawn
;;                 arguments `[N]`: STRING_EXT or LIST_EXT); $etf_ok 0 when it is none
;;   $etf_skip() -> 1 after stepping over any one term, 0 when the bytes are no term
;;   $etf_at_end() -> 1 when the cursor is at the end of the term's bytes
;;   global $etf_pos: the cursor (save and restore it to try another shape)
;; Writing (at a cursor the guest points at room of its own):
;;   $enc_begin(ptr)       the version byte; the term starts at ptr
;;   $enc_tuple(arity)     a tuple header (arity < 256), then write the elements
;;   $enc_atom(str, len)   an atom (len < 256, UTF-8)
;;   $enc_int(i64)         an integer in the smallest form
;;   $enc_raw(ptr, len)    bytes of a term read before (a pid, say), as they are
;;   $enc_len(ptr) -> the bytes written since $enc_begin(ptr)

(global $etf_pos (mut i32) (i32.const 0))
(global $etf_end (mut i32) (i32.const 0))
(global $etf_ok (mut i32) (i32.const 1))
(global $enc_out (mut i32) (i32.const 0))

;; whether n more bytes are there
(func $etf_need (param $n i32) (result i32)
  (i64.le_u
    (i64.add (i64.extend_i32_u (global.get $etf_pos)) (i64.extend_i32_u (local.get $n)))
    (i64.extend_i32_u (global.get $etf_end))))

(func $etf_u8 (result i32)
  (local $v i32)
  (if (i32.eqz (call $etf_need (i32.const 1))) (then (return (i32.const -1))))
  (local.set $v (i32.load8_u (global.get $etf_pos)))
  (global.set $etf_pos (i32.add (global.get $etf_pos) (i32.const 1)))
  (local.get $v))

;; big-endian u16 / u32; -1 (as i64) when short
(func $etf_be (param $n i32) (result i64)
  (local $v i64)
  (if (i32.eqz (call $etf_need (local.get $n))) (then (return (i64.const -1))))
  (block $done
    (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $v (i64.or (i64.shl (local.get $v) (i64.const 8))
                            (i64.load8_u (global.get $etf_pos))))
      (global.set $etf_pos (i32.add (global.get $etf_pos) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
  (local.get $v))

;; steps over n bytes; 0 when short
(func $etf_step (param $n i64) (result i32)
  (if (i64.gt_u (local.get $n) (i64.const 0xffffffff)) (then (return (i32.const 0))))
  (if (i32.eqz (call $etf_need (i32.wrap_i64 (local.get $n)))) (then (return (i32.const 0))))
  (global.set $etf_pos (i32.add (global.get $etf_pos) (i32.wrap_i64 (local.get $n))))
  (i32.const 1))

(func $etf_begin (param $ptr i32) (param $len i32) (result i32)
  (global.set $etf_pos (local.get $ptr))
  (global.set $etf_end (i32.add (local.get $ptr) (local.get $len)))
  (global.set $etf_ok (i32.const 1))
  (i32.eq (call $etf_u8) (i32.const 131)))

(func $etf_at_end (result i32)
  (i32.eq (global.get $etf_pos) (global.get $etf_end)))

(func $etf_tuple (result i32)
  (local $save i32) (local $tag i32)
  (local.set $save (global.get $etf_pos))
  (local.set $tag (call $etf_u8))
  (if (i32.eq (local.get $tag) (i32.const 104)) (then (return (call $etf_u8))))
  (if (i32.eq (local.get $tag) (i32.const 105))
    (then (return (i32.wrap_i64 (call $etf_be (i32.const 4))))))
  (global.set $etf_pos (local.get $save))
  (i32.const -1))

;; the length of the atom at the cursor (cursor at its text), or -1 (cursor unchanged)
(func $etf_atom_len (result i32)
  (local $save i32) (local $tag i32)
  (local.set $save (global.get $etf_pos))
  (local.set $tag (call $etf_u8))
  (if (i32.or (i32.eq (local.get $tag) (i32.const 119)) (i32.eq (local.get $tag) (i32.const 115)))
    (then (return (call $etf_u8))))
  (if (i32.or (i32.eq (local.get $tag) (i32.const 118)) (i32.eq (local.get $tag) (i32.const 100)))
    (then (return (i32.wrap_i64 (call $etf_be (i32.const 2))))))
  (global.set $etf_pos (local.get $save))
  (i32.const -1))

(func $etf_atom_is (param $str i32) (param $len i32) (result i32)
  (local $n i32) (local $at i32) (local $i i32)
  (local.set $n (call $etf_atom_len))
  (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
  (local.set $at (global.get $etf_pos))
  (if (i32.eqz (call $etf_step (i64.extend_i32_u (local.get $n)))) (then (return (i32.const 0))))
  (if (i32.ne (local.get $n) (local.get $len)) (then (return (i32.const 0))))
  (block $differ
    (loop $next
      (if (i32.eq (local.get $i) (local.get $n)) (then (return (i32.const 1))))
      (br_if $differ (i32.ne (i32.load8_u (i32.add (local.get $at) (local.get $i)))
                             (i32.load8_u (i32.add (local.get $str) (local.get $i)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (i32.const 0))

(func $etf_int (result i64)
  (local $tag i32) (local $n i32) (local $sign i32) (local $mag i64) (local $i i32)
  (local.set $tag (call $etf_u8))
  (if (i32.eq (local.get $tag) (i32.const 97))
    (then
      (local.set $n (call $etf_u8))
      (if (i32.lt_s (local.get $n) (i32.const 0)) (then (global.set $etf_ok (i32.const 0))))
      (return (i64.extend_i32_u (local.get $n)))))
  (if (i32.eq (local.get $tag) (i32.const 98))
    (then
      (if (i32.eqz (call $etf_need (i32.const 4)))
        (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
      ;; a signed 32-bit big-endian integer
      (return (i64.extend_i32_s (i32.wrap_i64 (call $etf_be (i32.const 4)))))))
  (if (i32.ne (local.get $tag) (i32.const 110))
    (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
  (local.set $n (call $etf_u8))
  (local.set $sign (call $etf_u8))
  (if (i32.or (i32.gt_u (local.get $n) (i32.const 8))
              (i32.or (i32.lt_s (local.get $sign) (i32.const 0))
                      (i32.eqz (call $etf_need (local.get $n)))))
    (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
  ;; little-endian magnitude
  (local.set $i (local.get $n))
  (block $done
    (loop $next
      (br_if $done (i32.eqz (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (local.set $mag (i64.or (i64.shl (local.get $mag) (i64.const 8))
        (i64.load8_u (i32.add (global.get $etf_pos) (local.get $i)))))
      (br $next)))
  (global.set $etf_pos (i32.add (global.get $etf_pos) (local.get $n)))
  (if (i32.eqz (local.get $sign))
    (then
      (if (i64.lt_s (local.get $mag) (i64.const 0))
        (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
      (return (local.get $mag))))
  ;; negative: down to -2^63
  (if (i64.gt_u (local.get $mag) (i64.const 0x8000000000000000))
    (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
  (i64.sub (i64.const 0) (local.get $mag)))

(func $etf_list_first_int (result i64)
  (local $tag i32) (local $n i64) (local $v i64)
  (local.set $tag (call $etf_u8))
  (if (i32.eq (local.get $tag) (i32.const 107))
    (then
      ;; STRING_EXT: a list of bytes
      (local.set $n (call $etf_be (i32.const 2)))
      (if (i64.lt_s (local.get $n) (i64.const 1))
        (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
      (local.set $v (i64.extend_i32_u (call $etf_u8)))
      (drop (call $etf_step (i64.sub (local.get $n) (i64.const 1))))
      (return (local.get $v))))
  (if (i32.ne (local.get $tag) (i32.const 108))
    (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
  (local.set $n (call $etf_be (i32.const 4)))
  (if (i64.lt_s (local.get $n) (i64.const 1))
    (then (global.set $etf_ok (i32.const 0)) (return (i64.const 0))))
  (local.set $v (call $etf_int))
  (local.get $v))

;; steps over n terms
(func $etf_skip_n (param $n i64) (result i32)
  (block $done
    (loop $next
      (br_if $done (i64.eqz (local.get $n)))
      (if (i32.eqz (call $etf_skip)) (then (return (i32.const 0))))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br $next)))
  (i32.const 1))

(func $etf_skip_atom (result i32)
  (local $n i32)
  (local.set $n (call $etf_atom_len))
  (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 0))))
  (call $etf_step (i64.extend_i32_u (local.get $n))))

(func $etf_skip (result i32)
  (local $tag i32) (local $n i64)
  (local.set $tag (call $etf_u8))
  (if (i32.lt_s (local.get $tag) (i32.const 0)) (then (return (i32.const 0))))
  ;; put atoms back under the cursor and read them whole
  (if (i32.or (i32.or (i32.eq (local.get $tag) (i32.const 100)) (i32.eq (local.get $tag) (i32.const 115)))
              (i32.or (i32.eq (local.get $tag) (i32.const 118)) (i32.eq (local.get $tag) (i32.const 119))))
    (then
      (global.set $etf_pos (i32.sub (global.get $etf_pos) (i32.const 1)))
      (return (call $etf_skip_atom))))
  (if (i32.eq (local.get $tag) (i32.const 97)) (then (return (call $etf_step (i64.const 1)))))
  (if (i32.eq (local.get $tag) (i32.const 98)) (then (return (call $etf_step (i64.const 4)))))
  (if (i32.eq (local.get $tag) (i32.const 70)) (then (return (call $etf_step (i64.const 8)))))
  (if (i32.eq (local.get $tag) (i32.const 106)) (then (return (i32.const 1))))
  ;; NEW_PID, PID, NEW_PORT, V4_PORT: a node atom, then fixed bytes
  (if (i32.eq (local.get $tag) (i32.const 88))
    (then (return (i32.and (call $etf_skip_atom) (call $etf_step (i64.const 12))))))
  (if (i32.eq (local.get $tag) (i32.const 103))
    (then (return (i32.and (call $etf_skip_atom) (call $etf_step (i64.const 9))))))
  (if (i32.eq (local.get $tag) (i32.const 89))
    (then (return (i32.and (call $etf_skip_atom) (call $etf_step (i64.const 8))))))
  (if (i32.eq (local.get $tag) (i32.const 120))
    (then (return (i32.and (call $etf_skip_atom) (call $etf_step (i64.const 12))))))
  ;; NEWER_REFERENCE: u16 n, node, u32 creation, n words
  (if (i32.eq (local.get $tag) (i32.const 90))
    (then
      (local.set $n (call $etf_be (i32.const 2)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (i32.and (call $etf_skip_atom)
        (call $etf_step (i64.add (i64.const 4) (i64.mul (local.get $n) (i64.const 4))))))))
  (if (i32.eq (local.get $tag) (i32.const 104))
    (then (return (call $etf_skip_n (i64.extend_i32_s (call $etf_u8))))))
  (if (i32.or (i32.eq (local.get $tag) (i32.const 105)) (i32.eq (local.get $tag) (i32.const 116)))
    (then
      (local.set $n (call $etf_be (i32.const 4)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      ;; a map has two terms per entry
      (if (i32.eq (local.get $tag) (i32.const 116))
        (then (local.set $n (i64.mul (local.get $n) (i64.const 2)))))
      (return (call $etf_skip_n (local.get $n)))))
  (if (i32.eq (local.get $tag) (i32.const 107))
    (then
      (local.set $n (call $etf_be (i32.const 2)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (call $etf_step (local.get $n)))))
  (if (i32.eq (local.get $tag) (i32.const 108))
    (then
      (local.set $n (call $etf_be (i32.const 4)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      ;; the elements and the tail
      (return (call $etf_skip_n (i64.add (local.get $n) (i64.const 1))))))
  (if (i32.eq (local.get $tag) (i32.const 109))
    (then
      (local.set $n (call $etf_be (i32.const 4)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (call $etf_step (local.get $n)))))
  (if (i32.eq (local.get $tag) (i32.const 77))
    (then
      (local.set $n (call $etf_be (i32.const 4)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (call $etf_step (i64.add (local.get $n) (i64.const 1))))))
  (if (i32.eq (local.get $tag) (i32.const 110))
    (then
      (local.set $n (i64.extend_i32_s (call $etf_u8)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (call $etf_step (i64.add (local.get $n) (i64.const 1))))))
  (if (i32.eq (local.get $tag) (i32.const 111))
    (then
      (local.set $n (call $etf_be (i32.const 4)))
      (if (i64.lt_s (local.get $n) (i64.const 0)) (then (return (i32.const 0))))
      (return (call $etf_step (i64.add (local.get $n) (i64.const 1))))))
  (i32.const 0))

(func $enc_byte (param $b i32)
  (i32.store8 (global.get $enc_out) (local.get $b))
  (global.set $enc_out (i32.add (global.get $enc_out) (i32.const 1))))

(func $enc_begin (param $ptr i32)
  (global.set $enc_out (local.get $ptr))
  (call $enc_byte (i32.const 131)))

(func $enc_len (param $ptr i32) (result i32)
  (i32.sub (global.get $enc_out) (local.get $ptr)))

(func $enc_tuple (param $arity i32)
  (call $enc_byte (i32.const 104))
  (call $enc_byte (local.get $arity)))

(func $enc_raw (param $ptr i32) (param $len i32)
  (memory.copy (global.get $enc_out) (local.get $ptr) (local.get $len))
  (global.set $enc_out (i32.add (global.get $enc_out) (local.get $len))))

(func $enc_atom (param $str i32) (param $len i32)
  (call $enc_byte (i32.const 119))
  (call $enc_byte (local.get $len))
  (call $enc_raw (local.get $str) (local.get $len)))

(func $enc_int (param $v i64)
  (local $mag i64) (local $n i32) (local $at i32)
  (if (i64.lt_u (local.get $v) (i64.const 256))
    (then (call $enc_byte (i32.const 97)) (call $enc_byte (i32.wrap_i64 (local.get $v))) (return)))
  (if (i64.eq (local.get $v) (i64.extend_i32_s (i32.wrap_i64 (local.get $v))))
    (then
      (call $enc_byte (i32.const 98))
      (call $enc_byte (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.const 24))))
      (call $enc_byte (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.const 16))))
      (call $enc_byte (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.const 8))))
      (call $enc_byte (i32.wrap_i64 (local.get $v)))
      (return)))
  ;; SMALL_BIG_EXT: n, sign, n little-endian bytes of the magnitude (as unsigned: -2^63 fits)
  (local.set $mag (select (i64.sub (i64.const 0) (local.get $v)) (local.get $v)
                          (i64.lt_s (local.get $v) (i64.const 0))))
  (call $enc_byte (i32.const 110))
  (local.set $at (global.get $enc_out))
  (call $enc_byte (i32.const 0))
  (call $enc_byte (i64.lt_s (local.get $v) (i64.const 0)))
  (block $done
    (loop $next
      (br_if $done (i64.eqz (local.get $mag)))
      (call $enc_byte (i32.wrap_i64 (local.get $mag)))
      (local.set $mag (i64.shr_u (local.get $mag) (i64.const 8)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $next)))
  (i32.store8 (local.get $at) (local.get $n)))
