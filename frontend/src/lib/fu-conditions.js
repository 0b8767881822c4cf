// Conditional display of questionnaire items, the same rules as followup/questionnaires/definition.py
// (FHIR enableWhen semantics): a question whose conditions refer to a hidden question sees it as
// unanswered.

function isEmpty(value) {
  return value === undefined || value === null || value === "" || (Array.isArray(value) && value.length === 0);
}

export function compare(value, operator, expected) {
  if (operator === "exists") {
    const present = !isEmpty(value);
    return expected === undefined || expected === null || expected === true ? present : !present;
  }
  if (isEmpty(value)) return false;
  if (Array.isArray(value)) {
    if (operator === "=") return value.includes(expected);
    if (operator === "!=") return !value.includes(expected);
    return false;
  }
  if ([">", ">=", "<", "<="].includes(operator)) {
    const left = Number(value);
    const right = Number(expected);
    if (Number.isNaN(left) || Number.isNaN(right)) return false;
    return { ">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right }[operator];
  }
  if (operator === "=") return String(value) === String(expected);
  return String(value) !== String(expected);
}

/** Return the link ids shown for these answers, in order. */
export function visibleItems(definition, answers) {
  const shown = [];
  const effective = {};
  for (const item of definition.items) {
    const conditions = item.enable_when || [];
    let enabled = true;
    if (conditions.length) {
      const results = conditions.map((c) => compare(effective[c.question], c.operator || "=", c.answer));
      enabled = (item.enable_behavior || "all") === "all" ? results.every(Boolean) : results.some(Boolean);
    }
    if (enabled) {
      shown.push(item.link_id);
      if (Object.prototype.hasOwnProperty.call(answers, item.link_id)) effective[item.link_id] = answers[item.link_id];
    }
  }
  return shown;
}
