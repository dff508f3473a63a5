// The GPT-2 byte-level alphabet: every byte 0..255 is shown as one printable Unicode character so
// that BPE vocabularies can be stored as text. Printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
// stand for themselves; the other 68 bytes (controls, space, DEL, NBSP, soft hyphen...) take the code
// points U+0100, U+0101, ... in byte order. So ' ' (0x20) is 'Ġ' (U+0120) and '\n' is 'Ċ' (U+010A).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace freekv::tok {

// Code point that represents byte b.
char32_t byte_to_char(uint8_t b);

// Byte represented by code point cp, or -1 when cp is not in the alphabet.
int char_to_byte(char32_t cp);

// Maps every byte of raw to its character (UTF-8 encoded). Output is 1-2 bytes per input byte.
std::string bytes_to_byte_level(std::string_view raw);

// Inverse of bytes_to_byte_level for one token. Returns false (leaving *out untouched) when some
// character is outside the alphabet; the Hugging Face decoder then uses the token's own UTF-8 bytes.
bool byte_level_to_bytes(std::string_view token, std::string* out);

}  // namespace freekv::tok
