// Accept (with one or more of the hospital's own datasets) or decline federated-task invitations.
import { requestJson, csrfTokenFromCookie } from "./api.js";

export function wireInvitations(table) {
  if (!table) return;
  const message = document.getElementById("invitation-message");
  for (const row of table.querySelectorAll("tbody tr[data-respond-url]")) {
    const answer = async (accept) => {
      const select = row.querySelector("select.dataset");
      const datasets = select ? [...select.selectedOptions].map((option) => option.value) : [];
      const body = accept ? { accept: true, datasets } : { accept: false };
      try {
        await requestJson(row.dataset.respondUrl, { method: "POST", body, csrfToken: csrfTokenFromCookie() });
        window.location.reload();
      } catch (err) {
        if (message) message.textContent = err.message;
      }
    };
    row.querySelector("button.accept")?.addEventListener("click", () => answer(true));
    row.querySelector("button.decline")?.addEventListener("click", () => answer(false));
  }
}
