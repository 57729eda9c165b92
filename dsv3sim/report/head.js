
window.__dsv3simErrors = [];
window.addEventListener('error', function (e) {
  window.__dsv3simErrors.push(String(e.message || e));
  var el = document.getElementById('js-errors'); if (el) el.textContent = window.__dsv3simErrors.join('\n');
});
