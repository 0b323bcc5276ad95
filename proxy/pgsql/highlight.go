package pgsql

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Span is a piece of a statement's text with the kind of token it is, for display: one of
// "keyword", "string", "number", "comment", "param", "ident" or "" (anything else, such
// as operators and the whitespace between tokens).
type Span struct {
	Text string
	Kind string
}

// Highlight splits sql into spans with PostgreSQL's own lexer. The spans put together are
// sql exactly; text the lexer cannot read (an unterminated string, say) is one plain span.
func Highlight(sql string) []Span {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return []Span{{Text: sql}}
	}
	var out []Span
	at := 0
	for _, t := range res.GetTokens() {
		start, end := int(t.GetStart()), int(t.GetEnd())
		if start < at || end > len(sql) || start > end {
			return []Span{{Text: sql}} // offsets we do not understand: show it plain
		}
		if start > at {
			out = append(out, Span{Text: sql[at:start]})
		}
		out = append(out, Span{Text: sql[start:end], Kind: tokenKind(t)})
		at = end
	}
	if at < len(sql) {
		out = append(out, Span{Text: sql[at:]})
	}
	return out
}

func tokenKind(t *pg_query.ScanToken) string {
	switch t.GetToken() {
	case pg_query.Token_SCONST, pg_query.Token_USCONST, pg_query.Token_BCONST, pg_query.Token_XCONST:
		return "string"
	case pg_query.Token_ICONST, pg_query.Token_FCONST:
		return "number"
	case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
		return "comment"
	case pg_query.Token_PARAM:
		return "param"
	case pg_query.Token_IDENT:
		return "ident"
	}
	if t.GetKeywordKind() != pg_query.KeywordKind_NO_KEYWORD {
		return "keyword"
	}
	return ""
}
