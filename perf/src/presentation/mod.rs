//! What a person looks at: charts of the result files, and a stored run as one page.
//!
//! - [`plot`] — PNG and SVG charts (scaling, latency, heatmaps, replays).
//! - [`html`] — `client report`: a stored run as one self-contained HTML page.

pub mod html;
pub mod plot;
