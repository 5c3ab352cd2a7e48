import {
  continueAsNew,
  log,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertInput } from '../contracts';
import { alertInBackground } from '../alerts/alerts.workflow';
import { SETTINGS_ACTIVITY_OPTIONS } from '../activity-options';
import { tokenRefusedSignal, type CredentialsCarry, type TokenProbe, type TokenRefusal } from '../contracts';

/** The probe interval when gate probes are off (as `TOKEN_PROBE_DEFAULT_MS` in src/lifecycle/credentials.ts). */
const DEFAULT_PROBE_MS = 60_000;

const settingsOf = proxyLocalActivities<Pick<Activities, 'lifecycleSettings'>>(SETTINGS_ACTIVITY_OPTIONS);
const acts = proxyActivities<Pick<Activities, 'probeToken' | 'resumeToken'>>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

/**
 * One run per refused token (`credentials/<source>`, started by the first send Meta refused the
 * token for; later refusals are signals). It raises one alert naming the token's source, probes
 * Meta with the token every `GATE_PROBE_INTERVAL` (1 minute when probes are off), and when a probe
 * succeeds lifts the pause, asks the WABAs that wait on it to drain, and resolves the alert. A
 * refusal that arrives while it resumes keeps it watching. See src/lifecycle/credentials.ts.
 */
export async function credentialsWorkflow(
  first: TokenRefusal,
  carry: CredentialsCarry = { alerted: false, probes: 0 },
): Promise<{ resumedAt: string; probes: number }> {
  const { source } = first;
  let latest = first;
  let refusals = 0;
  setHandler(tokenRefusedSignal, (r) => {
    latest = r;
    refusals++;
  });
  const settings = await settingsOf.lifecycleSettings();
  const interval =
    settings.probeIntervalMs && settings.probeIntervalMs > 0 ? settings.probeIntervalMs : DEFAULT_PROBE_MS;
  let probes = carry.probes;
  let lastProbe: TokenProbe | undefined;

  // Alerts go out in the background (bounded retries): a sink that is down never holds back a probe
  // or the resume. The run waits for them before it ends.
  const alerts: Promise<void>[] = [];
  const alert = (kind: 'credentialsPaused' | 'credentialsRestored', title: string, text: string): void => {
    const full: AlertInput = {
      kind,
      // The token's own incident, not the WABA's offboarding one (restoring the token must not
      // resolve an offboarding).
      incident: `token/${source}`,
      wabaId: first.wabaId,
      level: 0,
      severity: kind === 'credentialsPaused' ? 'critical' : 'warning',
      title,
      text,
      state: 'connected',
      queued: 0,
      at: new Date().toISOString(),
      runSinks: settings.alertSinks,
    };
    alerts.push(...alertInBackground(settings.alertSinks, full));
  };
  const details = () =>
    setCurrentDetails(
      [
        `Sending paused for every WABA using the token from ${source}: Meta refuses it (${latest.detail}).`,
        `Probes so far: ${probes}${lastProbe ? `; last: ${lastProbe.works === false ? 'still refused' : 'no answer'} (${lastProbe.detail})` : ''}.`,
        `Next probe in ${Math.round(interval / 1000)} s, with number ${latest.phoneNumberId} of WABA ${latest.wabaId}.`,
      ].join('\n'),
    );

  let alerted = carry.alerted;
  for (;;) {
    if (!alerted) {
      alert(
        'credentialsPaused',
        `Sending paused: Meta refuses the token from ${source}`,
        `A send for WABA ${latest.wabaId} failed with an authentication error (${latest.detail}). Sending is paused for every WABA using the token from ${source}; their messages are queued, none is failed or abandoned. Fix or renew the token: a probe every ${Math.round(interval / 1000)} s resumes sending by itself.`,
      );
      alerted = true;
    }
    details();
    await sleep(interval);
    lastProbe = await acts.probeToken({ source, wabaId: latest.wabaId, phoneNumberId: latest.phoneNumberId });
    probes++;
    if (lastProbe.works === true) {
      const before = refusals;
      const resumedAt = new Date().toISOString();
      const wabas = await acts.resumeToken({ source, resumedAt });
      if (refusals === before) {
        alert(
          'credentialsRestored',
          `Sending resumed: the token from ${source} works again`,
          `A probe with the token from ${source} succeeded (${lastProbe.detail}). The pause is lifted; ${wabas} WABA(s) with queued messages are draining.`,
        );
        await Promise.all(alerts);
        // A refusal while the alerts went out: the token broke again (its sender paused it anew).
        if (refusals === before) return { resumedAt, probes };
        alerted = false;
      }
      log.warn('a refusal arrived while resuming: watching the token again', { source });
    }
    if (workflowInfo().continueAsNewSuggested) {
      await Promise.all(alerts);
      await continueAsNew<typeof credentialsWorkflow>(latest, { alerted, probes });
    }
  }
}
