// Sign in: paste an API key or a JWT. It is checked with one read before it
// is kept, and kept for this browser session only.
import { ApiError, verifyCredential } from "../api";
import { h } from "../dom";
import { navigate, ready, type Route } from "../router";
import { setToken } from "../session";
import { errorText, message } from "../ui";

export function renderSignIn({ main, query }: Route): void {
  document.title = "Sign in · Second Brain";
  const input = h("textarea", {
    id: "signin-token",
    name: "token",
    rows: 3,
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    "aria-describedby": "signin-help",
  });
  const submit = h("button", { id: "signin-submit", type: "submit", class: "primary" }, "Sign in");
  const errors = h("div", { class: "form-errors" });
  const form = h(
    "form",
    { id: "signin-form", class: "card narrow", novalidate: true },
    h("label", { for: "signin-token" }, "API key or JWT"),
    input,
    h(
      "p",
      { id: "signin-help", class: "hint" },
      "It is kept in this browser tab's session only, and forgotten when you close it or sign out. ",
      "On the machine running Second Brain, `deploy/native/stack up` prints where the local API key is.",
    ),
    errors,
    submit,
  );
  if (query.get("expired")) errors.appendChild(message("info", "Your credential was refused; sign in again."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    const credential = input.value.trim().replace(/^Bearer\s+/i, "");
    if (!credential) {
      errors.appendChild(message("error", "Paste an API key or a JWT.", "signin-error"));
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      await verifyCredential(credential);
      setToken(credential);
      const next = query.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/", { replace: true });
    } catch (error) {
      const text =
        error instanceof ApiError && error.status === 401
          ? "That key or token was not accepted: it may be mistyped, revoked or expired."
          : `Could not sign in: ${errorText(error)}`;
      errors.appendChild(message("error", text, "signin-error"));
      input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h("h1", {}, "Sign in"), form);
  input.focus();
  ready(main);
}
