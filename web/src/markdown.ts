// A memory's content as Markdown, safely. markdown-it with raw HTML off
// escapes any tag a note holds, and its link check refuses javascript:,
// vbscript:, file: and (but for images) data: URLs. The result then goes
// through an allow-list of elements and attributes before it reaches the
// page: a second line, should a parser bug ever let something through.
import MarkdownIt from "markdown-it";

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: true });

// A table column's alignment comes out of markdown-it as an inline `style`,
// which the CSP refuses (style-src 'self'): make it a class before rendering.
md.core.ruler.push("align_as_class", (state) => {
  for (const token of state.tokens) {
    if (token.type !== "th_open" && token.type !== "td_open") continue;
    const style = token.attrGet("style");
    if (!style) continue;
    const align = /^text-align:(left|right|center)$/.exec(String(style))?.[1];
    token.attrs = (token.attrs ?? []).filter(([name]) => name !== "style");
    if (align) token.attrJoin("class", `align-${align}`);
  }
  return true;
});

const ELEMENTS = new Set([
  "A", "BLOCKQUOTE", "BR", "CODE", "DEL", "EM", "H1", "H2", "H3", "H4", "H5", "H6", "HR", "IMG", "LI", "OL",
  "P", "PRE", "S", "STRONG", "TABLE", "TBODY", "TD", "TH", "THEAD", "TR", "UL",
]);
const ATTRIBUTES: Record<string, Set<string>> = {
  A: new Set(["href", "title"]),
  IMG: new Set(["src", "alt", "title"]),
  OL: new Set(["start"]),
  TD: new Set(["class"]),
  TH: new Set(["class"]),
  CODE: new Set(["class"]),
};

function safeUrl(value: string, image: boolean): boolean {
  const url = value.trim().toLowerCase();
  if (url.startsWith("data:")) return image && /^data:image\/(png|gif|jpeg|webp);/.test(url);
  return !/^[a-z][a-z0-9+.-]*:/.test(url) || /^(https?|mailto):/.test(url);
}

function clean(node: Element): void {
  for (const child of Array.from(node.children)) {
    if (!ELEMENTS.has(child.tagName)) {
      // Keep the text of an element we do not allow, never its markup.
      child.replaceWith(document.createTextNode(child.textContent ?? ""));
      continue;
    }
    const allowed = ATTRIBUTES[child.tagName] ?? new Set<string>();
    for (const attr of Array.from(child.attributes)) {
      const keep =
        allowed.has(attr.name) &&
        (attr.name !== "href" && attr.name !== "src" ? true : safeUrl(attr.value, attr.name === "src")) &&
        (attr.name !== "class" || /^(language-[\w-]+|align-(left|right|center))$/.test(attr.value));
      if (!keep) child.removeAttribute(attr.name);
    }
    if (child.tagName === "A") {
      // Links leave the app in a new tab and tell the other site nothing.
      child.setAttribute("rel", "noopener noreferrer nofollow");
      child.setAttribute("target", "_blank");
    }
    if (child.tagName === "IMG") {
      // The CSP loads no image from elsewhere (no tracking pixels): show
      // such an image as a link to it instead of a broken picture.
      const src = child.getAttribute("src") ?? "";
      if (!src.startsWith("data:")) {
        const link = document.createElement("a");
        link.textContent = `Image: ${child.getAttribute("alt") || src}`;
        if (src) {
          link.setAttribute("href", src);
          link.setAttribute("rel", "noopener noreferrer nofollow");
          link.setAttribute("target", "_blank");
        }
        child.replaceWith(link);
        continue;
      }
    }
    clean(child);
  }
}

/** The content rendered as a fragment of safe elements. */
export function renderMarkdown(content: string): DocumentFragment {
  const template = document.createElement("template");
  // markdown-it escapes every raw tag (html: false); clean() enforces it.
  template.innerHTML = md.render(content);
  clean(template.content as unknown as Element);
  return template.content;
}

/**
 * A search snippet: the service HTML-escapes the content and marks the
 * matched words with <mark>; anything else is shown as text.
 */
export function renderSnippet(snippet: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  const parts = snippet.split(/(<mark>|<\/mark>)/);
  let marked = false;
  const decoder = document.createElement("textarea");
  for (const part of parts) {
    if (part === "<mark>") marked = true;
    else if (part === "</mark>") marked = false;
    else if (part) {
      // Unescape the entities as text: a textarea's value never runs markup.
      decoder.innerHTML = part;
      const text = document.createTextNode(decoder.value);
      if (marked) {
        const mark = document.createElement("mark");
        mark.appendChild(text);
        fragment.appendChild(mark);
      } else fragment.appendChild(text);
    }
  }
  return fragment;
}

/** The words of a note without its Markdown syntax, for previews. */
export function plainText(content: string, limit: number): string {
  const text = (renderMarkdown(content.length > limit * 4 ? content.slice(0, limit * 4) : content).textContent ?? "")
    .replace(/\s+/g, " ")
    .trim();
  return text.length > limit ? text.slice(0, limit) + "…" : text;
}
