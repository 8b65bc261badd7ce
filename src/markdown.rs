//! Markdown to safe HTML for forum posts and comments. Raw HTML in the source is shown
//! as text, links only keep safe schemes, and images become plain links (a remote image
//! would tell its host who reads the forum).

use pulldown_cmark::{CowStr, Event, LinkType, Options, Parser, Tag, TagEnd, html};

/// Renders markdown as HTML that is safe to insert into a page.
pub fn to_safe_html(source: &str) -> String {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(source, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            Event::Start(Tag::Link { link_type, dest_url: safe_url(dest_url), title, id })
        }
        Event::Start(Tag::Image { dest_url, title, id, .. }) => {
            Event::Start(Tag::Link { link_type: LinkType::Inline, dest_url: safe_url(dest_url), title, id })
        }
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut out = String::with_capacity(source.len() * 5 / 4 + 16);
    html::push_html(&mut out, events);
    out
}

/// Keeps `http`, `https`, `mailto` and relative links; anything else (`javascript:`,
/// `data:`, ...) becomes `#`.
fn safe_url(url: CowStr<'_>) -> CowStr<'_> {
    let lowered: String =
        url.chars().filter(|c| !c.is_whitespace() && !c.is_control()).collect::<String>().to_ascii_lowercase();
    let scheme_end = lowered.find(':');
    let path_start = lowered.find(['/', '?', '#']);
    let has_scheme = match (scheme_end, path_start) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    };
    if !has_scheme || ["http:", "https:", "mailto:"].iter().any(|s| lowered.starts_with(s)) {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn renders_common_markdown() {
        let html = to_safe_html("# Title\n\n*em* **strong** `code`\n\n- a\n- b");
        assert!(html.contains("<h1>Title</h1>"));
        assert!(html.contains("<em>em</em>"));
        assert!(html.contains("<strong>strong</strong>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains("<li>a</li>"));
    }

    #[test]
    fn raw_html_is_escaped() {
        let html = to_safe_html("<script>alert(1)</script>\n\nhi <img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"));
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn dangerous_link_schemes_are_removed() {
        for src in [
            "[x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "[x](<java\tscript:alert(1)>)",
            "[x](data:text/html,hi)",
        ] {
            let html = to_safe_html(src);
            assert!(html.contains("href=\"#\""), "{src} gave {html}");
        }
        // Not a link at all in markdown: it stays text.
        assert!(!to_safe_html("[x](java\tscript:alert(1))").contains("href"));
        assert!(to_safe_html("[x](https://example.com/a)").contains("href=\"https://example.com/a\""));
        assert!(to_safe_html("[x](/teams/1)").contains("href=\"/teams/1\""));
    }

    #[test]
    fn images_become_links() {
        let html = to_safe_html("![alt](https://example.com/i.png)");
        assert!(!html.contains("<img"));
        assert!(html.contains("<a href=\"https://example.com/i.png\">alt</a>"));
    }
}
