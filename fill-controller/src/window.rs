//! Fill windows in a site's local time (DESIGN §6): pure "is `now` inside the window, and
//! when does it close or open next", DST-safe through `jiff` and the IANA tz database.
//!
//! A window `HH:MM-HH:MM` starts on a local date; when its end is not after its start it ends
//! on the next date (wraps past midnight). Local times that a DST change skips are moved
//! forward by the gap and repeated local times take their first occurrence (RFC 5545
//! "compatible"), so a 02:00 start on a spring-forward night opens at 03:00, and a window
//! across a fall-back night is an hour longer in real time. The *night* of a window is the
//! local date it starts on; nightly budgets are kept per night. What it does not do: sleep.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use oca_common::sites::FillWindow;

use crate::error::FillError;

/// A site's fill window in its time zone.
#[derive(Debug, Clone)]
pub struct SiteWindow {
    tz: TimeZone,
    window: FillWindow,
}

/// Where `now` stands relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Inside the window of `night`; it closes at `closes`.
    Open {
        /// The local date the window started on.
        night: Date,
        /// When it closes.
        closes: Timestamp,
    },
    /// Outside; the window of `night` opens at `opens`.
    Closed {
        /// The local date the next window starts on.
        night: Date,
        /// When it opens.
        opens: Timestamp,
    },
}

impl SiteWindow {
    /// A window from a sites file's `time-zone` and `fill-window` (`HH:MM-HH:MM`).
    pub fn new(site: &str, time_zone: &str, window: &str) -> Result<SiteWindow, FillError> {
        let tz = TimeZone::get(time_zone).map_err(|e| FillError::Window {
            site: site.to_owned(),
            message: format!("time zone {time_zone:?}: {e}"),
        })?;
        let window = FillWindow::parse(window).ok_or_else(|| FillError::Window {
            site: site.to_owned(),
            message: format!("fill-window {window:?} is not HH:MM-HH:MM"),
        })?;
        Ok(SiteWindow { tz, window })
    }

    /// The site's window from its sites-file entry.
    pub fn of_site(site: &oca_common::sites::Site) -> Result<SiteWindow, FillError> {
        SiteWindow::new(&site.id, &site.time_zone, &site.fill_window)
    }

    fn instant(&self, date: Date, minutes: u16) -> Option<Timestamp> {
        let dt: DateTime = date
            .at(0, 0, 0, 0)
            .checked_add(Span::new().minutes(i64::from(minutes)))
            .ok()?;
        let z = self.tz.to_ambiguous_zoned(dt).compatible().ok()?;
        Some(z.timestamp())
    }

    /// Start and end of the window that starts on local `date`.
    pub fn bounds(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let start = self.instant(date, self.window.start_min)?;
        let end_date = if self.window.end_min <= self.window.start_min {
            date.tomorrow().ok()?
        } else {
            date
        };
        let end = self.instant(end_date, self.window.end_min)?;
        Some((start, end))
    }

    /// Where `now` stands. `None` only at the edges of the representable time range.
    pub fn state(&self, now: Timestamp) -> Option<WindowState> {
        let today = now.to_zoned(self.tz.clone()).date();
        let yesterday = today.yesterday().ok()?;
        let tomorrow = today.tomorrow().ok()?;
        for night in [yesterday, today] {
            let (start, end) = self.bounds(night)?;
            if start <= now && now < end {
                return Some(WindowState::Open { night, closes: end });
            }
        }
        for night in [today, tomorrow, tomorrow.tomorrow().ok()?] {
            let (start, _) = self.bounds(night)?;
            if start > now {
                return Some(WindowState::Closed {
                    night,
                    opens: start,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_ordinary_night_in_berlin() {
        let w = SiteWindow::new("ber", "Europe/Berlin", "02:00-14:00").unwrap();
        // 2026-11-22 00:30 UTC = 01:30 CET: closed, opens at 01:00 UTC.
        assert_eq!(
            w.state(ts("2026-11-22T00:30:00Z")),
            Some(WindowState::Closed {
                night: jiff::civil::date(2026, 11, 22),
                opens: ts("2026-11-22T01:00:00Z"),
            })
        );
        assert_eq!(
            w.state(ts("2026-11-22T01:00:00Z")),
            Some(WindowState::Open {
                night: jiff::civil::date(2026, 11, 22),
                closes: ts("2026-11-22T13:00:00Z"),
            })
        );
        // The end is exclusive; after it the next night's window is next.
        assert_eq!(
            w.state(ts("2026-11-22T13:00:00Z")),
            Some(WindowState::Closed {
                night: jiff::civil::date(2026, 11, 23),
                opens: ts("2026-11-23T01:00:00Z"),
            })
        );
    }

    #[test]
    fn spring_forward_moves_a_start_in_the_gap_to_the_end_of_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST. 02:00 local does not exist.
        let w = SiteWindow::new("ber", "Europe/Berlin", "02:00-14:00").unwrap();
        let (start, end) = w.bounds(jiff::civil::date(2026, 3, 29)).unwrap();
        assert_eq!(start, ts("2026-03-29T01:00:00Z")); // 03:00 CEST
        assert_eq!(end, ts("2026-03-29T12:00:00Z")); // 14:00 CEST
        // The day before is still on CET.
        let (start, _) = w.bounds(jiff::civil::date(2026, 3, 28)).unwrap();
        assert_eq!(start, ts("2026-03-28T01:00:00Z"));
    }

    #[test]
    fn fall_back_makes_a_window_across_it_an_hour_longer() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET.
        let w = SiteWindow::new("ber", "Europe/Berlin", "01:00-05:00").unwrap();
        let (start, end) = w.bounds(jiff::civil::date(2026, 10, 25)).unwrap();
        assert_eq!(start, ts("2026-10-24T23:00:00Z")); // 01:00 CEST
        assert_eq!(end, ts("2026-10-25T04:00:00Z")); // 05:00 CET
        assert_eq!(end.duration_since(start).as_secs(), 5 * 3600);
    }

    #[test]
    fn a_window_wrapping_past_midnight_belongs_to_the_night_it_starts() {
        let w = SiteWindow::new("nyc", "America/New_York", "22:00-06:00").unwrap();
        // 2026-11-22 04:00 UTC = 23:00 EST on the 21st: open since 03:00 UTC.
        assert_eq!(
            w.state(ts("2026-11-22T04:00:00Z")),
            Some(WindowState::Open {
                night: jiff::civil::date(2026, 11, 21),
                closes: ts("2026-11-22T11:00:00Z"),
            })
        );
        // 2026-11-22 08:00 UTC = 03:00 EST on the 22nd: still the night of the 21st.
        assert!(matches!(
            w.state(ts("2026-11-22T08:00:00Z")),
            Some(WindowState::Open { night, .. }) if night == jiff::civil::date(2026, 11, 21)
        ));
        // 12:00 UTC = 07:00 EST: closed until 22:00 EST = 03:00 UTC next day.
        assert_eq!(
            w.state(ts("2026-11-22T12:00:00Z")),
            Some(WindowState::Closed {
                night: jiff::civil::date(2026, 11, 22),
                opens: ts("2026-11-23T03:00:00Z"),
            })
        );
    }

    #[test]
    fn every_appliance_of_a_site_sees_the_same_opening() {
        let w = SiteWindow::new("syd", "Australia/Sydney", "02:00-08:00").unwrap();
        let a = w.state(ts("2026-11-22T10:00:00Z"));
        let b = w.clone().state(ts("2026-11-22T10:00:00.5Z"));
        match (a, b) {
            (
                Some(WindowState::Closed { opens: x, .. }),
                Some(WindowState::Closed { opens: y, .. }),
            ) => assert_eq!(x, y),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_zones_and_windows_are_clear_errors() {
        let e = SiteWindow::new("x", "Mars/Olympus", "02:00-14:00").unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
        let e = SiteWindow::new("x", "UTC", "2-14").unwrap_err();
        assert!(e.to_string().contains("fill-window"), "{e}");
    }
}
