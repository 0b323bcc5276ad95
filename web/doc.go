// Package web is Portcullis's HTTP surface on the server listener: the JSON API under
// /api/v1 (bearer tokens) and, in time, the approver and security console. Every handler
// returns an error that one place (writeError) turns into a status and a safe message;
// internal detail goes to the log, never to the client.
package web
