//! Replies from a language model are Markdown. They are shown as a safe
//! subset of HTML (paragraphs, lists, quotes, emphasis, code, links) and
//! spoken as their words alone.
//!
//! The HTML is written here element by element rather than by a general
//! renderer followed by a sanitizer: what is not in the subset cannot come
//! out. Raw HTML in a reply is shown as the text it is, images as their
//! description (a remote image would tell its server who reads the reply),
//! and only `http`, `https` and `mailto` links become links.
//!
//! [`spoken`] gives the words the page shows, in the same order, blocks
//! separated by a newline, code blocks left out (the page marks them as
//! not spoken): speech-mark offsets in it find their word on the page
//! (`web/static/chat.js`, `renderMarkdown`).

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

fn parser(markdown: &str) -> Parser<'_> {
    Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH)
}

/// The reply as HTML of the safe subset.
pub fn html(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 4);
    // Links whose address was refused: their end tag is dropped too.
    let mut refused: Vec<bool> = Vec::new();
    for event in parser(markdown) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => out.push_str("<p>"),
                // Headings of a reply are not headings of the page (the page
                // has its own outline): shown as a bold paragraph.
                Tag::Heading { .. } => out.push_str("<p class=\"heading\"><strong>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>\n"),
                Tag::CodeBlock(kind) => {
                    out.push_str("<pre><code");
                    if let CodeBlockKind::Fenced(info) = kind {
                        let language = info.split_whitespace().next().unwrap_or_default();
                        if !language.is_empty() {
                            out.push_str(" data-language=\"");
                            escape(&mut out, language);
                            out.push('"');
                        }
                    }
                    out.push('>');
                }
                Tag::List(Some(1)) => out.push_str("<ol>\n"),
                Tag::List(Some(start)) => out.push_str(&format!("<ol start=\"{start}\">\n")),
                Tag::List(None) => out.push_str("<ul>\n"),
                Tag::Item => out.push_str("<li>"),
                Tag::Emphasis => out.push_str("<em>"),
                Tag::Strong => out.push_str("<strong>"),
                Tag::Strikethrough => out.push_str("<del>"),
                Tag::Link {
                    dest_url, title, ..
                } => {
                    let safe = safe_link(&dest_url);
                    refused.push(!safe);
                    if safe {
                        out.push_str("<a href=\"");
                        escape(&mut out, dest_url.trim());
                        out.push('"');
                        if !title.is_empty() {
                            out.push_str(" title=\"");
                            escape(&mut out, &title);
                            out.push('"');
                        }
                        out.push_str(" rel=\"noopener noreferrer\" target=\"_blank\">");
                    }
                }
                // Its description (the events inside) stands in for it.
                Tag::Image { .. } => {}
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("</p>\n"),
                TagEnd::Heading(_) => out.push_str("</strong></p>\n"),
                TagEnd::BlockQuote(_) => out.push_str("</blockquote>\n"),
                TagEnd::CodeBlock => out.push_str("</code></pre>\n"),
                TagEnd::List(true) => out.push_str("</ol>\n"),
                TagEnd::List(false) => out.push_str("</ul>\n"),
                TagEnd::Item => out.push_str("</li>\n"),
                TagEnd::Emphasis => out.push_str("</em>"),
                TagEnd::Strong => out.push_str("</strong>"),
                TagEnd::Strikethrough => out.push_str("</del>"),
                // A refused link's text stays, without its end tag.
                TagEnd::Link if refused.pop() == Some(false) => out.push_str("</a>"),
                _ => {}
            },
            Event::Text(text) | Event::Html(text) | Event::InlineHtml(text) => {
                escape(&mut out, &text)
            }
            Event::Code(code) => {
                out.push_str("<code>");
                escape(&mut out, &code);
                out.push_str("</code>");
            }
            Event::SoftBreak => out.push('\n'),
            Event::HardBreak => out.push_str("<br>\n"),
            Event::Rule => out.push_str("<hr>\n"),
            _ => {}
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// The words of the reply as the page shows them, without the markup and
/// without code blocks.
pub fn spoken(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut in_code_block = false;
    for event in parser(markdown) {
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code_block = true,
            Event::End(TagEnd::CodeBlock) => {
                in_code_block = false;
                out.push('\n');
            }
            Event::Start(Tag::Paragraph | Tag::Heading { .. } | Tag::Item | Tag::BlockQuote(_))
            | Event::End(
                TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item | TagEnd::BlockQuote(_),
            )
            | Event::HardBreak
            | Event::Rule => out.push('\n'),
            Event::SoftBreak => out.push(' '),
            Event::Text(text) | Event::Html(text) | Event::InlineHtml(text) | Event::Code(text)
                if !in_code_block =>
            {
                out.push_str(&text)
            }
            _ => {}
        }
    }
    out.trim().to_string()
}

/// `text` as Markdown that shows it as it is: a name such as `*Star*`
/// put into a reply stays a name, not emphasis.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '~' | '#' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Only web and mail addresses: `javascript:`, `data:` and the like never
/// become links, nor do relative ones (they would point into voxgate).
fn safe_link(url: &str) -> bool {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    ["http://", "https://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme) && url.len() > scheme.len())
}

fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_subset() {
        let md = "Hello **there**, *you*.\n\n- one\n- `two`\n\n1. first\n2. second\n\n> quoted\n\n```rust\nlet x = 1 < 2;\n```\n\n## Title\n\n~~gone~~";
        assert_eq!(
            html(md),
            "<p>Hello <strong>there</strong>, <em>you</em>.</p>\n\
             <ul>\n<li>one</li>\n<li><code>two</code></li>\n</ul>\n\
             <ol>\n<li>first</li>\n<li>second</li>\n</ol>\n\
             <blockquote>\n<p>quoted</p>\n</blockquote>\n\
             <pre><code data-language=\"rust\">let x = 1 &lt; 2;\n</code></pre>\n\
             <p class=\"heading\"><strong>Title</strong></p>\n\
             <p><del>gone</del></p>"
        );
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let md = "<script>alert(1)</script>\n\nHi <img src=x onerror=alert(1)> there <b>bold</b>";
        let out = html(md);
        assert!(!out.contains("<script"), "{out}");
        assert!(!out.contains("<img"), "{out}");
        assert!(!out.contains("<b>"), "{out}");
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
    }

    #[test]
    fn links_are_web_or_mail_only_and_open_apart() {
        assert_eq!(
            html("[docs](https://example.com/a?b=1&c=\"2\" \"The docs\")"),
            "<p><a href=\"https://example.com/a?b=1&amp;c=&quot;2&quot;\" title=\"The docs\" rel=\"noopener noreferrer\" target=\"_blank\">docs</a></p>"
        );
        for bad in [
            "[x](javascript:alert(1))",
            "[x](JavaScript:alert(1))",
            "[x](data:text/html,hi)",
            "[x](/api/admin/users)",
            "[x](vbscript:x)",
            "<javascript:alert(1)>",
        ] {
            let out = html(bad);
            assert!(!out.contains("<a"), "{bad} became {out}");
        }
        assert!(html("<https://example.com>").contains("href=\"https://example.com\""));
        assert!(html("[mail](mailto:a@example.com)").contains("href=\"mailto:a@example.com\""));
    }

    #[test]
    fn escaped_text_is_shown_and_spoken_as_it_is() {
        let name = "*Star* _b_ `c` [d](https://e.example) <f> ~~g~~ # h ![i](j) \\";
        let md = format!("Hello {}.", escape_markdown(name));
        assert_eq!(
            html(&md),
            "<p>Hello *Star* _b_ `c` [d](https://e.example) &lt;f&gt; ~~g~~ # h ![i](j) \\.</p>"
        );
        assert_eq!(spoken(&md), format!("Hello {name}."));
    }

    #[test]
    fn images_become_their_description() {
        let out = html("![a tracking pixel](https://evil.example/p.gif)");
        assert_eq!(out, "<p>a tracking pixel</p>");
        assert_eq!(
            spoken("![a tracking pixel](https://evil.example/p.gif)"),
            "a tracking pixel"
        );
    }

    #[test]
    fn spoken_has_the_words_without_markup_or_code_blocks() {
        let md = "Use **`cargo test`** to run [the tests](https://example.com).\n\n```sh\nrm -rf /\n```\n\n- one\n- two";
        let said = spoken(md);
        let lines: Vec<&str> = said.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, ["Use cargo test to run the tests.", "one", "two"]);
        assert_eq!(spoken("plain text, no markup."), "plain text, no markup.");
        assert_eq!(spoken("a <b>tag</b>"), "a <b>tag</b>");
    }

    #[test]
    fn spoken_words_are_the_words_shown() {
        // The page counts words over the HTML's text (outside code blocks);
        // the same words in the same order must be what is spoken.
        let md = "# Steps\n\n1. Open **the** _file_\n2. Say \"hi\" & <wave>\n\nDone.\n\n```\nskipped\n```\n\nEnd";
        let shown = strip_tags(&html(md));
        let words_shown: Vec<_> = shown.split_whitespace().collect();
        let spoken = spoken(md);
        let words_spoken: Vec<_> = spoken.split_whitespace().collect();
        assert_eq!(words_shown, words_spoken);
    }

    /// The text of `html` outside `<pre>` blocks, entities decoded,
    /// every tag read as a space: what the page's word walk sees.
    fn strip_tags(html: &str) -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some(start) = rest.find("<pre>") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("</pre>").expect("closed") + start + 6;
            rest = &rest[end..];
        }
        out.push_str(rest);
        let mut text = String::new();
        let mut in_tag = false;
        for c in out.chars() {
            match c {
                '<' => in_tag = true,
                '>' if in_tag => {
                    in_tag = false;
                }
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }
}
