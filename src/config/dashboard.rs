//! Who may open the live dashboard (`/dashboard` and its feed), as
//! `[dashboard]` and `[admin]` decide together. Pure: the HTTP handler asks
//! [`Settings::dashboard_access`] and only compares tokens.
//!
//! The dashboard shows the same aggregates as `/metrics`, so it was public
//! by default; but an operator who protects the admin API with a token
//! expects the cockpit next to it to be closed too. So: `dashboard.token`
//! when set; otherwise `admin.token` when set, unless `dashboard.public =
//! true` says the page is meant to be public; with no token anywhere the
//! page stays public (and start-up says so in one log line).

use super::{ConfigError, Settings};

/// Who may open the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardAccess<'a> {
    /// Anyone, because `dashboard.public = true` says so.
    Public,
    /// Anyone, because no token is set (neither `dashboard.token` nor
    /// `admin.token`): start-up logs it.
    PublicForWantOfToken,
    /// Whoever offers `token`, the value of the setting `from` names.
    Token {
        /// The token to offer.
        token: &'a str,
        /// The setting it comes from, for the refusal's text and the log.
        from: &'static str,
    },
}

impl Settings {
    /// Who may open the dashboard (see the module docs).
    pub fn dashboard_access(&self) -> DashboardAccess<'_> {
        let dashboard = &self.dashboard;
        if !dashboard.token.is_empty() {
            DashboardAccess::Token {
                token: dashboard.token.expose(),
                from: "dashboard.token",
            }
        } else if dashboard.public {
            DashboardAccess::Public
        } else if !self.admin.token.is_empty() {
            DashboardAccess::Token {
                token: self.admin.token.expose(),
                from: "admin.token",
            }
        } else {
            DashboardAccess::PublicForWantOfToken
        }
    }

    /// `dashboard.public = true` beside a `dashboard.token` says two
    /// contrary things: refused rather than guessed.
    pub(super) fn validate_dashboard(&self) -> Result<(), ConfigError> {
        if self.dashboard.public && !self.dashboard.token.is_empty() {
            return Err(ConfigError::Invalid(
                "dashboard.public = true and dashboard.token are both set: \
                 keep one (public, or protected by the token)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dashboard_token: &str, public: bool, admin_token: &str) -> Settings {
        let mut settings = Settings::default();
        settings.dashboard.token = dashboard_token.into();
        settings.dashboard.public = public;
        settings.admin.token = admin_token.into();
        settings
    }

    #[test]
    fn the_dashboard_token_wins_over_the_admin_token() {
        let s = settings("dash", false, "admin");
        assert_eq!(
            s.dashboard_access(),
            DashboardAccess::Token {
                token: "dash",
                from: "dashboard.token"
            }
        );
    }

    #[test]
    fn without_its_own_token_the_dashboard_wants_the_admin_token() {
        let s = settings("", false, "admin");
        assert_eq!(
            s.dashboard_access(),
            DashboardAccess::Token {
                token: "admin",
                from: "admin.token"
            }
        );
    }

    #[test]
    fn public_opens_it_despite_an_admin_token() {
        let s = settings("", true, "admin");
        assert_eq!(s.dashboard_access(), DashboardAccess::Public);
        assert!(s.validate_dashboard().is_ok());
    }

    #[test]
    fn with_no_token_anywhere_it_stays_public() {
        let s = settings("", false, "");
        assert_eq!(s.dashboard_access(), DashboardAccess::PublicForWantOfToken);
        assert_eq!(
            Settings::default().dashboard_access(),
            DashboardAccess::PublicForWantOfToken
        );
    }

    #[test]
    fn public_beside_a_dashboard_token_is_refused() {
        assert!(settings("dash", true, "").validate_dashboard().is_err());
    }
}
