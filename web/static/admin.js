// The admin page: user list with search and paging, create-user form with
// the API's field errors shown next to the fields, enable/disable, role
// editing, delete with confirmation, and recent audit entries. Text is
// only ever set with textContent; state changes carry the CSRF token.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const rows = $('user-rows');
  const status = $('admin-status');
  const createForm = $('create-form');
  const PER_PAGE = 10;
  let page = 1;
  let total = 0;
  let search = '';
  let roles = [];

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `Request failed (${status})`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
    const options = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign('/auth/login?return_to=%2Fadmin');
      throw new ApiError(401, { detail: 'Your session has ended.' });
    }
    if (!response.ok) {
      let problem = null;
      try { problem = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, problem);
    }
    return response.status === 204 ? null : response.json();
  }

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle('error', Boolean(isError));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(label, className, onClick, ariaLabel) {
    const b = el('button', className, label);
    b.type = 'button';
    if (ariaLabel) b.setAttribute('aria-label', ariaLabel);
    b.addEventListener('click', onClick);
    return b;
  }

  // ---- Users ---------------------------------------------------------------

  function roleEditor(user) {
    const box = el('div', 'role-editor');
    const group = el('div', 'role-choices');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', `Roles of ${user.username}`);
    const boxes = [];
    for (const role of roles) {
      const label = el('label', 'role-choice');
      const check = document.createElement('input');
      check.type = 'checkbox';
      check.value = role.name;
      check.checked = user.roles.includes(role.name);
      check.dataset.role = role.name;
      boxes.push(check);
      label.append(check, ` ${role.name}`);
      group.appendChild(label);
    }
    const save = button('Save roles', 'button small secondary save-roles', async () => {
      const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
      try {
        await api('PATCH', `/api/admin/users/${user.id}`, { roles: chosen });
        say(`Roles of ${user.username} saved: ${chosen.join(', ') || 'none'}.`);
        await Promise.all([loadUsers(), loadAudit()]);
      } catch (error) {
        say(`Roles of ${user.username} were not saved: ${error.message}`, true);
      }
    }, `Save roles of ${user.username}`);
    box.append(group, save);
    return box;
  }

  function userRow(user) {
    const tr = document.createElement('tr');
    tr.dataset.username = user.username;
    const name = `${user.firstName} ${user.lastName}`.trim();
    const who = el('td', 'user-cell');
    who.append(el('strong', null, user.username));
    if (name) who.append(el('span', 'muted', name));
    const email = el('td', 'email-cell', user.email || '—');
    const state = el('td', null);
    const badge = el('span', `badge ${user.enabled ? 'ok' : 'off'}`, user.enabled ? 'Enabled' : 'Disabled');
    state.append(badge);
    if (user.status !== 'active') state.append(el('span', 'badge warn', user.status));
    if (!user.lastLoginAt) state.append(el('span', 'badge off', 'Never signed in'));
    const roleCell = el('td', null);
    roleCell.append(roleEditor(user));
    const actions = el('td', 'actions');
    actions.append(
      button(user.enabled ? 'Disable' : 'Enable', 'button small secondary toggle-enabled', async () => {
        try {
          await api('PATCH', `/api/admin/users/${user.id}`, { enabled: !user.enabled });
          say(`${user.username} is now ${user.enabled ? 'disabled' : 'enabled'}.`);
          await Promise.all([loadUsers(), loadAudit()]);
        } catch (error) {
          say(`Could not change ${user.username}: ${error.message}`, true);
        }
      }, `${user.enabled ? 'Disable' : 'Enable'} ${user.username}`),
      button('Delete', 'button small danger delete-user', () => confirmDelete(user), `Delete ${user.username}`),
    );
    tr.append(who, email, state, roleCell, actions);
    return tr;
  }

  async function loadUsers() {
    const query = new URLSearchParams({ page: String(page), per_page: String(PER_PAGE) });
    if (search) query.set('search', search);
    const result = await api('GET', `/api/admin/users?${query}`);
    total = result.total;
    rows.textContent = '';
    if (result.items.length === 0) {
      const tr = document.createElement('tr');
      const td = el('td', 'empty', search ? 'No user matches this search.' : 'No users yet.');
      td.colSpan = 5;
      tr.appendChild(td);
      rows.appendChild(tr);
    }
    for (const user of result.items) rows.appendChild(userRow(user));
    const pages = Math.max(1, Math.ceil(total / PER_PAGE));
    $('page-info').textContent = `Page ${page} of ${pages} · ${total} user${total === 1 ? '' : 's'}`;
    $('prev-page').disabled = page <= 1;
    $('next-page').disabled = page >= pages;
  }

  $('prev-page').addEventListener('click', () => { page = Math.max(1, page - 1); loadUsers().catch(failed); });
  $('next-page').addEventListener('click', () => { page += 1; loadUsers().catch(failed); });
  $('search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    search = $('search').value.trim();
    page = 1;
    loadUsers().catch(failed);
  });

  // ---- Delete ----------------------------------------------------------------

  const dialog = $('confirm-delete');
  let deleting = null;
  function confirmDelete(user) {
    deleting = user;
    $('confirm-delete-text').textContent =
      `Delete ${user.username}${user.email ? ` (${user.email})` : ''}? They are removed from Keycloak and can no longer sign in. The audit log keeps a record.`;
    dialog.showModal();
  }
  dialog.addEventListener('close', async () => {
    const user = deleting;
    deleting = null;
    if (!user || dialog.returnValue !== 'confirm') return;
    try {
      await api('DELETE', `/api/admin/users/${user.id}`);
      say(`${user.username} was deleted.`);
      await Promise.all([loadUsers(), loadAudit()]);
    } catch (error) {
      say(`Could not delete ${user.username}: ${error.message}`, true);
    }
  });

  // ---- Create ------------------------------------------------------------------

  function clearErrors() {
    for (const p of createForm.querySelectorAll('[data-error-for]')) p.textContent = '';
    for (const i of createForm.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  function fieldError(field, message) {
    const target = createForm.querySelector(`[data-error-for="${CSS.escape(field)}"]`) ||
      createForm.querySelector('[data-error-for="_form"]');
    target.textContent = target.textContent ? `${target.textContent} ${message}` : message;
    const inputEl = createForm.querySelector(`[name="${CSS.escape(field)}"]`);
    if (inputEl) {
      inputEl.setAttribute('aria-invalid', 'true');
      if (target.id === '') target.id = `error-${field}`;
      inputEl.setAttribute('aria-describedby', target.id);
    }
  }

  function showNewRoles() {
    const box = $('new-roles');
    box.textContent = '';
    for (const role of roles) {
      const label = el('label', 'role-choice');
      const check = document.createElement('input');
      check.type = 'checkbox';
      check.name = 'roles';
      check.value = role.name;
      check.checked = role.name === 'user';
      label.append(check, ` ${role.name}`);
      label.title = role.description;
      box.appendChild(label);
    }
  }

  createForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    const value = (name) => createForm.querySelector(`[name="${name}"]`).value;
    const body = {
      username: value('username').trim(),
      email: value('email').trim(),
      firstName: value('firstName').trim(),
      lastName: value('lastName').trim(),
      roles: [...createForm.querySelectorAll('input[name="roles"]:checked')].map((c) => c.value),
      password: { value: value('password'), temporary: $('new-temporary').checked },
    };
    const submit = $('create-user');
    submit.disabled = true;
    try {
      const created = await api('POST', '/api/admin/users', body);
      createForm.reset();
      showNewRoles();
      say(`User ${created.username} was created.`);
      search = '';
      $('search').value = '';
      await Promise.all([loadUsers(), loadAudit()]);
    } catch (error) {
      const problem = error.problem || {};
      if (Array.isArray(problem.errors) && problem.errors.length > 0) {
        for (const e of problem.errors) fieldError(e.field, e.message);
      } else if (problem.field) {
        fieldError(problem.field, problem.detail || error.message);
      } else {
        fieldError('_form', error.message);
      }
      const firstInvalid = createForm.querySelector('[aria-invalid="true"]');
      if (firstInvalid) firstInvalid.focus();
      say('The user was not created. See the messages next to the fields.', true);
    } finally {
      submit.disabled = false;
    }
  });

  // ---- Audit --------------------------------------------------------------------

  async function loadAudit() {
    const result = await api('GET', '/api/admin/audit?per_page=15');
    const body = $('audit-rows');
    body.textContent = '';
    for (const entry of result.items) {
      const tr = document.createElement('tr');
      const time = el('time', null, new Date(entry.at).toLocaleString());
      time.dateTime = entry.at;
      const when = el('td', null);
      when.appendChild(time);
      tr.append(
        when,
        el('td', null, entry.actor),
        el('td', null, entry.action),
        el('td', null, entry.target || '—'),
        el('td', null, entry.outcome),
      );
      tr.lastChild.className = `outcome ${entry.outcome}`;
      body.appendChild(tr);
    }
    if (result.items.length === 0) {
      const tr = document.createElement('tr');
      const td = el('td', 'empty', 'Nothing has happened yet.');
      td.colSpan = 5;
      tr.appendChild(td);
      body.appendChild(tr);
    }
  }

  function failed(error) {
    say(error.message, true);
  }

  async function start() {
    try {
      roles = await api('GET', '/api/admin/roles');
    } catch (error) {
      failed(error);
    }
    showNewRoles();
    await Promise.all([loadUsers().catch(failed), loadAudit().catch(failed)]);
    document.body.dataset.ready = 'true';
  }

  start();
})();
