// MathJax 3, served by the site (assets/mathjax/, copied there by docs/_hooks/mathjax.py).
// Two kinds of page hold math:
// - Markdown pages and docstrings: pymdownx.arithmatex (generic mode) writes \(...\) and
//   \[...\] inside elements of class "arithmatex";
// - notebook pages (mkdocs-jupyter): the notebooks' Markdown cells keep their $...$ and
//   $$...$$, inside elements of class "jp-RenderedMarkdown".
// Only those elements are typeset, with all they hold: an element with a class is skipped
// with its content, unless it is one of them; an element without a class goes with its
// parent. So a "$" in code, in a program's output or in a copy button's text stays text.
// MathJax typesets each page once, when it starts: the theme's instant navigation is off.
// (Material's snippet that re-typesets on its document$ also clears MathJax's font cache,
// and the math typeset before that shows blank.)
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|jp-RenderedMarkdown",
  },
};
