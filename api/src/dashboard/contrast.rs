//! The stylesheet's colours meet WCAG 2's AA contrast (4.5:1 for text) in both themes: each
//! pair of custom properties text is drawn with is measured, as read from the stylesheet.

use std::collections::HashMap;

use super::STYLESHEET;

/// The pairs (text, background) the stylesheet draws text with.
const PAIRS: [(&str, &str); 11] = [
    ("--fg", "--bg"),
    ("--fg", "--card"),
    ("--muted", "--bg"),
    ("--muted", "--card"),
    ("--accent", "--bg"),
    ("--accent", "--card"),
    ("--bg", "--accent"),
    ("--on", "--on-bg"),
    ("--off", "--off-bg"),
    ("--error", "--error-bg"),
    ("--bg", "--error"),
];

/// The custom properties set in the block starting at `selector`.
fn theme(selector: &str) -> HashMap<String, (f64, f64, f64)> {
    let start = STYLESHEET.find(selector).expect("the theme's block");
    let block = &STYLESHEET[start..];
    let block = &block[block.find('{').unwrap_or(0) + 1..block.find('}').unwrap_or(0)];
    block
        .split(';')
        .filter_map(|declaration| {
            let (name, value) = declaration.split_once(':')?;
            let hex = value.trim().strip_prefix('#')?;
            let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
            let rgb = (channel(0)?, channel(2)?, channel(4)?);
            Some((
                name.trim().to_string(),
                (rgb.0.into(), rgb.1.into(), rgb.2.into()),
            ))
        })
        .collect()
}

fn luminance((r, g, b): (f64, f64, f64)) -> f64 {
    let linear = |c: f64| {
        let c = c / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

fn contrast(a: (f64, f64, f64), b: (f64, f64, f64)) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[test]
fn every_text_colour_meets_aa_contrast_in_both_themes() {
    for selector in [":root {", ":root.dark {"] {
        let colours = theme(selector);
        for (text, background) in PAIRS {
            let ratio = contrast(colours[text], colours[background]);
            assert!(
                ratio >= 4.5,
                "{selector} {text} on {background}: {ratio:.2}"
            );
        }
    }
}

#[test]
fn the_measure_is_wcags() {
    let black = (0.0, 0.0, 0.0);
    let white = (255.0, 255.0, 255.0);
    assert!((contrast(black, white) - 21.0).abs() < 1e-9);
    assert!((contrast(white, white) - 1.0).abs() < 1e-9);
    let grey = (0x76 as f64, 0x76 as f64, 0x76 as f64);
    assert!((contrast(grey, white) - 4.54).abs() < 0.01);
}
