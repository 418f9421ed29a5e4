//! `input_json` as written: the JSON text a task's input becomes, built
//! straight from the parser's tokens rather than through `serde_json::Value`
//! (which rounds large integers to `f64` without serde_json's
//! `arbitrary_precision`, sorts object keys, and turns TOML's date-times into
//! a private map).
//!
//! The rules, the same for a JSON and a TOML task file, so that the two give
//! byte-identical inputs for the same content:
//! - Objects keep their keys in the order written; a key written twice is
//!   refused (JSON allows it, but which value wins is up to the reader).
//! - Integers keep every digit, however large (JSON's; TOML's are 64-bit by
//!   its specification). `-0` is written `0`.
//! - Other numbers are written in their shortest `f64` form when that says the
//!   same decimal value as the text (`1e3` → `1000.0`, `0.10` → `0.1`), and
//!   as written otherwise (`0.1000000000000000000001` stays; an exponent in
//!   serde_json's spelling, `1E400` → `1e+400`), so no digit is lost from a
//!   JSON file. A TOML float has already been read as an `f64`
//!   by the TOML parser, so it is exact only to `f64` precision. NaN and the
//!   infinities (TOML's `nan`, `inf`) have no JSON form: refused.
//! - TOML dates and times become RFC 3339 strings (section 5.6): an
//!   offset date-time `"1979-05-27T07:32:00Z"` (`date-time`), a local date
//!   `"1979-05-27"` (`full-date`), a local time `"07:32:00"`
//!   (`partial-time`), a local date-time `"1979-05-27T07:32:00"` (`full-date
//!   "T" partial-time`, with no offset, as written).
//! - Strings are JSON-escaped by serde_json; whitespace outside strings is
//!   dropped.

use std::fmt::{self, Write as _};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// The key serde_json's `arbitrary_precision` feature hands a number's text
/// under (serde_json 1.x, `src/number.rs`).
const JSON_NUMBER: &str = "$serde_json::private::Number";

/// The key the `toml` crate hands a date-time's text under
/// (`toml_datetime::__unstable::FIELD`).
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Deepest nesting accepted, the same for both formats: below where either
/// parser gives up on its own (the TOML parser near 80 levels, serde_json's
/// at 128), so a deeper value is refused with this limit named.
const MAX_DEPTH: usize = 64;

/// The JSON text of an `input_json` value, built by the rules in the module
/// documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExactJson(pub(super) String);

impl<'de> Deserialize<'de> for ExactJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = String::new();
        d.deserialize_any(Writer {
            out: &mut out,
            depth: 0,
        })?;
        Ok(ExactJson(out))
    }
}

/// Writes one value's JSON text to `out`.
struct Writer<'a> {
    out: &'a mut String,
    depth: usize,
}

impl Writer<'_> {
    fn nested(&mut self) -> Writer<'_> {
        Writer {
            out: self.out,
            depth: self.depth + 1,
        }
    }

    fn string(&mut self, s: &str) {
        // Serialising a str into a String cannot fail.
        self.out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// A [`Writer`] as a seed, so that nested values are written in place.
impl<'de> de::DeserializeSeed<'de> for Writer<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "input_json is nested deeper than {MAX_DEPTH} levels"
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.out.push_str(
            &shortest(v)
                .ok_or_else(|| E::custom(format!("input_json holds {v}, which JSON cannot write")))?,
        );
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        self.string(v);
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(mut self, d: D) -> Result<(), D::Error> {
        de::DeserializeSeed::deserialize(self.nested(), d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.out.push('[');
        let mut first = true;
        loop {
            let mark = self.out.len();
            if !first {
                self.out.push(',');
            }
            if seq.next_element_seed(self.nested())?.is_none() {
                self.out.truncate(mark);
                break;
            }
            first = false;
        }
        self.out.push(']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            self.out.push_str("{}");
            return Ok(());
        };
        // A number's or a date-time's text, handed over as a one-entry map.
        if first == JSON_NUMBER {
            let text: String = map.next_value()?;
            // The same key written in a file reaches here too: only a
            // number's text passes.
            if !is_json_number(&text) {
                return Err(de::Error::custom(format!(
                    "input_json has the reserved key {JSON_NUMBER:?}"
                )));
            }
            self.out.push_str(&number(&text));
            return Ok(());
        }
        if first == TOML_DATETIME {
            let text: String = map.next_value()?;
            let dt: toml::value::Datetime = text.parse().map_err(de::Error::custom)?;
            self.string(&dt.to_string());
            return Ok(());
        }
        self.out.push('{');
        let mut seen = std::collections::HashSet::new();
        let mut key = Some(first);
        while let Some(k) = key {
            if !seen.insert(k.clone()) {
                return Err(de::Error::custom(format!("input_json has the key {k:?} twice")));
            }
            if seen.len() > 1 {
                self.out.push(',');
            }
            self.string(&k);
            self.out.push(':');
            map.next_value_seed(self.nested())?;
            key = map.next_key::<String>()?;
        }
        self.out.push('}');
        Ok(())
    }
}

/// The shortest text that reads back as `v` (serde_json's, through ryu:
/// `1000.0`, `0.1`, `1e300`), or `None` for NaN and the infinities.
fn shortest(v: f64) -> Option<String> {
    v.is_finite()
        .then(|| serde_json::to_string(&v).unwrap_or_default())
}

/// True for text of JSON's number grammar (RFC 8259, section 6):
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let s = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let whole_ok = whole == "0" || (digits(whole) && !whole.starts_with('0'));
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    whole_ok && fraction.is_none_or(digits) && exponent_ok
}

/// A JSON number's text by the module's rules.
fn number(text: &str) -> String {
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        return if text == "-0" { "0".into() } else { text.into() };
    }
    match text.parse::<f64>().ok().and_then(shortest) {
        Some(short) if decimal(&short) == decimal(text) => short,
        _ => text.into(),
    }
}

/// A number's decimal value as (negative, significant digits without leading
/// or trailing zeros, exponent of the digit string's end), so that texts of
/// the same value compare equal (`1e3`, `1000.0`, `10.0e2`). `None` when the
/// exponent does not fit (such a text is kept as written).
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let exponent = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let trimmed = digits.trim_start_matches('0');
    let significant = trimmed.trim_end_matches('0');
    if significant.is_empty() {
        return Some((negative, String::new(), 0));
    }
    let zeros = i64::try_from(trimmed.len() - significant.len()).ok()?;
    Some((negative, significant.to_string(), exponent.checked_add(zeros)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json(text: &str) -> Result<String, String> {
        serde_json::from_str::<ExactJson>(text)
            .map(|e| e.0)
            .map_err(|e| e.to_string())
    }

    fn from_toml(value: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            v: ExactJson,
        }
        toml::from_str::<Doc>(&format!("v = {value}\n"))
            .map(|d| d.v.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn json_numbers_keep_every_digit() {
        for (text, want) in [
            ("123456789012345678901234567890", "123456789012345678901234567890"),
            ("-98765432109876543210", "-98765432109876543210"),
            ("-0", "0"),
            ("1e3", "1000.0"),
            ("10.0e2", "1000.0"),
            ("0.10", "0.1"),
            ("1.5", "1.5"),
            ("-0.0", "-0.0"),
            ("0.1000000000000000000001", "0.1000000000000000000001"),
            ("3.14159265358979323846264338", "3.14159265358979323846264338"),
            ("1e400", "1e+400"),
            ("1E-99999999999999999999999", "1e-99999999999999999999999"),
        ] {
            assert_eq!(from_json(text).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn keys_keep_their_order_and_strings_their_text() {
        let text = r#" { "b" : [1, {"z": null, "a": true}], "a": "é\n\u0001\"" , "e": {}, "f": [] } "#;
        assert_eq!(
            from_json(text).unwrap(),
            r#"{"b":[1,{"z":null,"a":true}],"a":"é\n\u0001\"","e":{},"f":[]}"#
        );
        let e = from_json(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(e.contains("the key \"a\" twice"), "{e}");
    }

    #[test]
    fn toml_dates_and_times_become_rfc_3339_strings() {
        for (value, want) in [
            ("1979-05-27T07:32:00Z", r#""1979-05-27T07:32:00Z""#),
            ("1979-05-27 07:32:00Z", r#""1979-05-27T07:32:00Z""#),
            ("1979-05-27t07:32:00z", r#""1979-05-27T07:32:00Z""#),
            (
                "1979-05-27T00:32:00.999999-07:00",
                r#""1979-05-27T00:32:00.999999-07:00""#,
            ),
            ("1979-05-27T07:32:00", r#""1979-05-27T07:32:00""#),
            ("1979-05-27", r#""1979-05-27""#),
            ("07:32:00", r#""07:32:00""#),
            (
                "{ dt = 1979-05-27T07:32:00Z }",
                r#"{"dt":"1979-05-27T07:32:00Z"}"#,
            ),
        ] {
            assert_eq!(from_toml(value).as_deref(), Ok(want), "{value}");
        }
    }

    #[test]
    fn toml_and_json_of_the_same_content_give_the_same_bytes() {
        let pairs = [
            (
                r#"{ z = 1, a = [1.5, 1e3, -0, "x"], m = { k = true } }"#,
                r#"{"z": 1, "a": [1.5, 1e3, -0, "x"], "m": {"k": true}}"#,
            ),
            ("9223372036854775807", "9223372036854775807"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("0.1", "0.1"),
            ("6.02e23", "6.02e23"),
            (r#""tab\there""#, r#""tab\there""#),
        ];
        for (toml_value, json) in pairs {
            assert_eq!(from_toml(toml_value), from_json(json), "{toml_value}");
        }
    }

    #[test]
    fn values_json_cannot_write_are_refused() {
        for value in ["nan", "inf", "-inf", "[1, nan]"] {
            let e = from_toml(value).unwrap_err();
            assert!(e.contains("which JSON cannot write"), "{value}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let e = from_json(&deep).unwrap_err();
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        let e = from_toml(&format!("{}{}", "[".repeat(70), "]".repeat(70))).unwrap_err();
        assert!(e.contains("nested deeper than 64 levels"), "{e}");
        for forged in [
            r#"{"$serde_json::private::Number": "1 2 }{ x"}"#,
            r#"{"$serde_json::private::Number": "01"}"#,
        ] {
            let e = from_json(forged).unwrap_err();
            assert!(e.contains("reserved key"), "{forged}: {e}");
        }
        for n in ["0", "-0.5", "12e-3", "1E+9", "10"] {
            assert!(is_json_number(n), "{n}");
        }
        for n in ["", "-", "01", "1.", ".5", "1e", "1e+", "0x1", "1 2", "+1"] {
            assert!(!is_json_number(n), "{n}");
        }
    }
}
