// Behaviour shared by every page, kept out of the HTML so that the Content-Security-Policy can refuse
// inline scripts: a <select class="js-submit-on-change"> submits its form when changed (the language menu).
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.classList.contains("js-submit-on-change") && target.form) {
    target.form.submit();
  }
});
