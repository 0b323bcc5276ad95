// Package pgsql classifies PostgreSQL statements into policy actions using the real
// PostgreSQL parser (pg_query, which embeds PostgreSQL's own grammar). Classify returns the
// action class (read, write, delete, ddl, admin, unknown), the statement kind, the tables,
// schemas and functions it touches, and whether the text holds several statements. A text
// with several statements is classified by its most dangerous one; text the parser
// rejects is unknown, which policy treats as the most dangerous class.
package pgsql
