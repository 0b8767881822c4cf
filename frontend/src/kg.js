// Entry point of the knowledge-graph side panel on the report, study and patient report pages.
import { initKgLinks } from "./lib/kg-links.js";

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => initKgLinks(document));
} else {
  initKgLinks(document);
}
