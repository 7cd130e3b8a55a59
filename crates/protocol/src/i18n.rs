//! Sealbox speaks Simplified Chinese and English: every user-facing string has both.

use serde::{Deserialize, Serialize};

/// A user-facing language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Simplified Chinese.
    #[default]
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The language of the command lines' messages: `SEALBOX_LANG` when it is set, otherwise the
    /// locale (`LC_ALL`, `LC_MESSAGES`, `LANG`, the first one set); `zh…` is Chinese, anything
    /// else English.
    pub fn from_env() -> Lang {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        Lang::from_settings(
            var("SEALBOX_LANG").as_deref(),
            ["LC_ALL", "LC_MESSAGES", "LANG"]
                .iter()
                .find_map(|k| var(k))
                .as_deref(),
        )
    }

    /// [`Lang::from_env`] from the values themselves.
    pub fn from_settings(sealbox_lang: Option<&str>, locale: Option<&str>) -> Lang {
        match sealbox_lang.or(locale) {
            Some(l) if l.to_ascii_lowercase().starts_with("zh") => Lang::Zh,
            _ => Lang::En,
        }
    }

    /// "error: " in this language.
    pub fn error_prefix(self) -> &'static str {
        match self {
            Lang::Zh => "错误：",
            Lang::En => "error: ",
        }
    }
}

/// A text in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub zh: String,
    pub en: String,
}

impl Text {
    pub fn new(zh: impl Into<String>, en: impl Into<String>) -> Self {
        Text {
            zh: zh.into(),
            en: en.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }

    pub(crate) fn is_blank(&self) -> bool {
        self.zh.trim().is_empty() || self.en.trim().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_the_settings() {
        assert_eq!(Lang::from_settings(None, Some("zh_CN.UTF-8")), Lang::Zh);
        assert_eq!(Lang::from_settings(None, Some("C.UTF-8")), Lang::En);
        assert_eq!(Lang::from_settings(None, None), Lang::En);
        assert_eq!(
            Lang::from_settings(Some("en"), Some("zh_CN.UTF-8")),
            Lang::En
        );
        assert_eq!(Lang::from_settings(Some("zh"), Some("C")), Lang::Zh);
    }
}
