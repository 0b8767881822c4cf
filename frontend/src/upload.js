// Study upload widget (templates/annotation/_upload_widget.html).
//
// Files come from drag and drop (folders included), a multi-file input or a folder
// input; they are posted as multipart/form-data through XMLHttpRequest so the page can
// show upload progress. The server answers 201 with the created studies or 4xx with
// {"error": {"code", "message", "filename"}}.
import { errorFromResponse, csrfTokenFromCookie } from "./lib/api.js";
import { gettext, interpolate, ngettext } from "./lib/i18n.js";
import { formatBytes } from "./lib/format.js";

function fileKey(entry) {
  return `${entry.path}\u0000${entry.file.size}\u0000${entry.file.lastModified}`;
}

/** Read every file under a dropped directory entry (webkitGetAsEntry API). */
async function collectEntry(entry, prefix = "") {
  if (!entry) return [];
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const children = [];
  // readEntries returns batches (about 100 at a time in Chromium) until an empty one.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((c) => collectEntry(c, `${prefix}${entry.name}/`)));
  return nested.flat();
}

async function filesFromDataTransfer(dt) {
  const items = dt.items ? [...dt.items].filter((i) => i.kind === "file") : [];
  const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (entries.length && entries.every(Boolean)) {
    const nested = await Promise.all(entries.map((e) => collectEntry(e)));
    return nested.flat();
  }
  return [...dt.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
}

class UploadWidget {
  constructor(root) {
    this.root = root;
    this.entries = [];
    this.xhr = null;
    this.maxBytes = Number(root.dataset.maxUploadBytes) || 0;
    this.el = (id) => root.querySelector(`#${id}`) || document.getElementById(id);
  }

  mount() {
    const zone = this.el("drop-zone");
    const fileInput = this.el("file-input");
    const folderInput = this.el("folder-input");
    if (zone) {
      ["dragenter", "dragover"].forEach((type) =>
        zone.addEventListener(type, (event) => {
          event.preventDefault();
          if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
          zone.classList.add("is-dragover");
        }),
      );
      zone.addEventListener("dragleave", (event) => {
        if (!zone.contains(event.relatedTarget)) zone.classList.remove("is-dragover");
      });
      zone.addEventListener("drop", async (event) => {
        event.preventDefault();
        zone.classList.remove("is-dragover");
        if (event.dataTransfer) this.addFiles(await filesFromDataTransfer(event.dataTransfer));
      });
      zone.addEventListener("keydown", (event) => {
        if ((event.key === "Enter" || event.key === " ") && event.target === zone && fileInput) {
          event.preventDefault();
          fileInput.click();
        }
      });
    }
    for (const input of [fileInput, folderInput]) {
      if (!input) continue;
      input.addEventListener("change", () => {
        this.addFiles([...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
        input.value = "";
      });
    }
    const clear = this.el("clear-files");
    if (clear) clear.addEventListener("click", () => this.setEntries([]));
    const list = this.el("file-list");
    if (list) {
      list.addEventListener("click", (event) => {
        const button = event.target.closest("button[data-index]");
        if (!button) return;
        const index = Number(button.dataset.index);
        this.setEntries(this.entries.filter((_, i) => i !== index));
      });
    }
    const form = this.root.tagName === "FORM" ? this.root : this.root.querySelector("form");
    if (form) form.addEventListener("submit", (event) => event.preventDefault());
    const button = this.el("upload-button");
    if (button) button.addEventListener("click", (event) => {
      event.preventDefault();
      this.upload();
    });
    const cancel = this.el("upload-cancel");
    if (cancel) cancel.addEventListener("click", () => this.xhr && this.xhr.abort());
    this.render();
    this.root.dataset.ready = "true";
  }

  addFiles(newEntries) {
    const seen = new Set(this.entries.map(fileKey));
    const merged = this.entries.slice();
    for (const entry of newEntries) {
      const key = fileKey(entry);
      if (!seen.has(key)) {
        seen.add(key);
        merged.push(entry);
      }
    }
    this.setEntries(merged);
  }

  setEntries(entries) {
    this.entries = entries;
    this.render();
  }

  totalBytes() {
    return this.entries.reduce((sum, e) => sum + e.file.size, 0);
  }

  render() {
    const list = this.el("file-list");
    const summary = this.el("file-summary");
    const count = this.entries.length;
    const total = this.totalBytes();
    if (summary) {
      summary.textContent = count ? interpolate(ngettext("%(count)s file, %(size)s in total", "%(count)s files, %(size)s in total", count), { count, size: formatBytes(total) }) : gettext("No files chosen");
      summary.dataset.count = String(count);
      summary.dataset.totalBytes = String(total);
    }
    if (list) {
      list.textContent = "";
      // A 500-slice DICOM folder would make a very long list: show the first ones.
      const shown = this.entries.slice(0, 200);
      shown.forEach((entry, index) => {
        const li = document.createElement("li");
        const name = document.createElement("span");
        name.className = "file-name";
        name.textContent = entry.path;
        const size = document.createElement("span");
        size.className = "file-size";
        size.textContent = formatBytes(entry.file.size);
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "btn btn-link btn-sm";
        remove.dataset.index = String(index);
        remove.textContent = gettext("Remove");
        li.append(name, size, remove);
        list.appendChild(li);
      });
      if (count > shown.length) {
        const li = document.createElement("li");
        li.className = "file-more";
        li.textContent = `… +${count - shown.length}`;
        list.appendChild(li);
      }
    }
    const clear = this.el("clear-files");
    if (clear) clear.disabled = count === 0 || !!this.xhr;
    const button = this.el("upload-button");
    if (button) button.disabled = count === 0 || !!this.xhr;
  }

  showError(message, filename) {
    const box = this.el("upload-error");
    if (!box) return;
    box.textContent = "";
    const msg = document.createElement("span");
    msg.textContent = message;
    box.appendChild(msg);
    if (filename) {
      const file = document.createElement("span");
      file.className = "error-filename";
      file.textContent = ` (${interpolate(gettext("file: %(filename)s"), { filename })})`;
      box.appendChild(file);
    }
    box.hidden = false;
  }

  clearMessages() {
    const box = this.el("upload-error");
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
    const result = this.el("upload-result");
    if (result) {
      result.hidden = true;
      result.textContent = "";
    }
  }

  setProgress(percent, text) {
    const bar = this.el("upload-progress");
    if (bar) {
      bar.value = percent;
      bar.hidden = false;
    }
    const label = this.el("upload-progress-text");
    if (label) label.textContent = text || "";
  }

  upload() {
    if (this.xhr) return;
    this.clearMessages();
    const mrnInput = this.el("patient-mrn");
    const nameInput = this.el("patient-name");
    const mrn = mrnInput ? mrnInput.value.trim() : "";
    if (!mrn) {
      this.showError(gettext("Enter the patient MRN."));
      if (mrnInput) mrnInput.focus();
      return;
    }
    if (!this.entries.length) {
      this.showError(gettext("Choose files to upload."));
      return;
    }
    if (this.maxBytes && this.totalBytes() > this.maxBytes) {
      this.showError(interpolate(gettext("The files exceed the %(size)s limit."), { size: formatBytes(this.maxBytes) }));
      return;
    }
    const form = new FormData();
    form.append("patient_mrn", mrn);
    form.append("patient_name", nameInput ? nameInput.value.trim() : "");
    for (const entry of this.entries) form.append("files", entry.file, entry.file.name);

    const xhr = new XMLHttpRequest();
    this.xhr = xhr;
    xhr.open("POST", this.root.dataset.uploadUrl);
    xhr.setRequestHeader("X-CSRFToken", this.root.dataset.csrf || csrfTokenFromCookie());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((100 * event.loaded) / event.total);
      this.setProgress(percent, percent >= 100 ? gettext("Processing on the server…") : interpolate(gettext("Uploading… %(percent)s"), { percent: `${percent}%` }));
    };
    xhr.upload.onload = () => this.setProgress(100, gettext("Processing on the server…"));
    xhr.onload = () => this.finish(xhr);
    xhr.onerror = () => this.fail(gettext("Network error: the upload did not finish."));
    xhr.onabort = () => this.fail(gettext("Upload cancelled."));
    this.root.dataset.state = "uploading";
    this.toggleBusy(true);
    this.setProgress(0, interpolate(gettext("Uploading… %(percent)s"), { percent: "0%" }));
    xhr.send(form);
  }

  toggleBusy(busy) {
    this.root.classList.toggle("is-busy", busy);
    const cancel = this.el("upload-cancel");
    if (cancel) cancel.hidden = !busy;
    this.render();
  }

  fail(message, filename) {
    this.xhr = null;
    this.root.dataset.state = "error";
    this.toggleBusy(false);
    this.setProgress(0, "");
    this.showError(message, filename);
  }

  finish(xhr) {
    let data = null;
    try {
      data = xhr.responseText ? JSON.parse(xhr.responseText) : null;
    } catch (_) {
      data = null;
    }
    if (xhr.status < 200 || xhr.status >= 300) {
      const err = errorFromResponse(xhr.status, xhr.statusText, data);
      this.fail(err.message, err.payload && err.payload.filename);
      return;
    }
    this.xhr = null;
    this.root.dataset.state = "done";
    this.setProgress(100, "");
    this.entries = [];
    this.toggleBusy(false);
    this.renderResult(data || {});
  }

  renderResult(data) {
    const result = this.el("upload-result");
    if (!result) return;
    result.textContent = "";
    const studies = Array.isArray(data.studies)
      ? data.studies
      : (data.study_ids || []).map((id) => ({ id, url: null }));
    const heading = document.createElement("p");
    heading.className = "result-heading";
    heading.textContent = interpolate(ngettext("Created %(count)s study:", "Created %(count)s studies:", studies.length), { count: studies.length });
    result.appendChild(heading);
    const list = document.createElement("ul");
    list.className = "study-links";
    for (const study of studies) {
      const li = document.createElement("li");
      const link = document.createElement(study.url ? "a" : "span");
      link.className = "study-link";
      if (study.url) link.href = study.url;
      link.dataset.studyId = String(study.id);
      link.textContent = interpolate(gettext("Study #%(id)s"), { id: study.id });
      li.appendChild(link);
      list.appendChild(li);
    }
    result.appendChild(list);
    const skipped = Array.isArray(data.skipped) ? data.skipped : [];
    if (skipped.length) {
      const details = document.createElement("details");
      details.className = "skipped-files";
      const summary = document.createElement("summary");
      summary.textContent = interpolate(ngettext("%(count)s file skipped", "%(count)s files skipped", skipped.length), { count: skipped.length });
      details.appendChild(summary);
      const ul = document.createElement("ul");
      for (const item of skipped) {
        const [name, reason] = Array.isArray(item) ? item : [item.name, item.reason];
        const li = document.createElement("li");
        li.textContent = reason ? `${name}: ${reason}` : String(name);
        ul.appendChild(li);
      }
      details.appendChild(ul);
      result.appendChild(details);
    }
    result.hidden = false;
  }
}

function main() {
  document.querySelectorAll("[data-upload-widget]").forEach((root) => {
    if (root.dataset.ready) return;
    new UploadWidget(root).mount();
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
