#include "hs_html.h"

#include "hs_json.h"

/*
 * Nothing may be fetched: no network, no file, no frame. Inline script and
 * style are the page's own, written below.
 */
#define HS_HTML_CSP                                                            \
    "default-src 'none'; script-src 'unsafe-inline'; "                         \
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

void hs_html_write(FILE *f, const struct hs_config *cfg, struct hs_report *r)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
          "<meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"" HS_HTML_CSP
          "\">\n<meta name=\"referrer\" content=\"no-referrer\">\n"
          "<meta name=\"viewport\" "
          "content=\"width=device-width, initial-scale=1\">\n"
          "<title>hubsim report: ",
          f);
    hs_html_text(f, cfg->hub);
    fputs("</title>\n<style>\n", f);
    fputs(hs_html_css, f);
    fputs("</style>\n</head>\n<body>\n<header>\n"
          "<h1 id=\"title\">hubsim report</h1>\n<p>",
          f);
    hs_html_text(f, cfg->hub);
    fprintf(f, " &middot; %u device%s over ", cfg->ndevices,
            cfg->ndevices == 1 ? "" : "s");
    hs_html_text(f, hs_protocol_name(cfg->protocol));
    fputs("</p>\n</header>\n<noscript><p>The tables and charts are drawn by "
          "this page's script; the data is the JSON block in the page's "
          "source.</p></noscript>\n<main id=\"report\"></main>\n"
          "<footer>hubsim " HG_VERSION " &middot; a self-contained page: "
          "it loads nothing.</footer>\n"
          "<script type=\"application/json\" id=\"hubsim-data\">\n",
          f);
    hs_report_json(r, f);
    fputs("</script>\n<script>\n", f);
    fputs(hs_html_js, f);
    fputs("</script>\n</body>\n</html>\n", f);
}
