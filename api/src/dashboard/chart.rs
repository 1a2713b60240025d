//! Charts drawn on the server as SVG (no chart library in the browser): a bar per period, each
//! with a `<title>` (its period and value, which browsers show on hover and screen readers
//! read) and the chart labelled as a whole.

use maud::{Markup, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const AXIS: f64 = 18.0;

/// A bar chart of `points` (label, value) in order, described by `label` (e.g. "Evaluations of
/// banner in Production, per 15 minutes"); `unit` names a value ("evaluations").
pub fn bars(label: &str, points: &[(String, i64)], unit: &str) -> Markup {
    let total: i64 = points.iter().map(|(_, v)| v).sum();
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let slot = WIDTH / points.len().max(1) as f64;
    let bar = (slot * 0.8).max(1.0);
    let plot = HEIGHT - AXIS;
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label={ (label) ": " (total) " " (unit) " in all" }
                preserveAspectRatio="none" {
                line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) class="axis" {}
                @for (i, (period, value)) in points.iter().enumerate() {
                    @let height = plot * (*value as f64) / (max as f64);
                    rect x=(format!("{:.1}", i as f64 * slot + (slot - bar) / 2.0))
                        y=(format!("{:.1}", plot - height)) width=(format!("{bar:.1}"))
                        height=(format!("{height:.1}")) class="bar" {
                        title { (period) ": " (value) " " (unit) }
                    }
                }
                @if let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) {
                    text x="0" y=(HEIGHT - 4.0) class="tick" { (first) }
                    text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" class="tick" { (last) }
                }
            }
            figcaption { (label) ": " strong { (total) } " " (unit) ", at most " (max) " in one period." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bar_carries_its_period_and_value_and_the_tallest_fills_the_plot() {
        let points = vec![("10:00".to_string(), 2), ("10:15".to_string(), 8)];
        let svg = bars("Evaluations", &points, "evaluations").into_string();
        assert!(svg.contains("<title>10:00: 2 evaluations</title>"), "{svg}");
        assert!(svg.contains("<title>10:15: 8 evaluations</title>"));
        assert!(svg.contains(&format!("height=\"{:.1}\"", HEIGHT - AXIS)));
        assert!(svg.contains("aria-label=\"Evaluations: 10 evaluations in all\""));
    }

    #[test]
    fn an_empty_chart_draws_no_bar() {
        let svg = bars("Nothing", &[], "calls").into_string();
        assert!(!svg.contains("<rect"));
        assert!(svg.contains("<strong>0</strong>"));
    }
}
